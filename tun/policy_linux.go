package tun

import (
	"errors"
	"fmt"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// UsePolicyRouting makes c put every route it adds from now on into p.Table, and
// install, with the first route of each address family, the rule that sends every
// packet without p.Mark through that table (ip rule add not fwmark MARK table TABLE
// priority PRIORITY). The daemon's IKE and ESP sockets carry the mark, so they keep
// using the main table whatever the tunnel's routes cover: a full tunnel's default
// routes, or selectors that contain the gateway's address, also after MOBIKE moved
// the SA to another gateway address. Rules and routes a killed daemon left in
// p.Table are removed first. Close removes the rules.
func (c *NetlinkConfigurator) UsePolicyRouting(p PolicyRouting) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.h == nil {
		return errClosed
	}
	if p.Table <= 0 || p.Table == unix.RT_TABLE_MAIN || p.Table == unix.RT_TABLE_LOCAL || p.Table == unix.RT_TABLE_DEFAULT || p.Mark == 0 {
		return fmt.Errorf("tun: policy routing: table %d and mark %#x are not usable", p.Table, p.Mark)
	}
	if err := c.cleanPolicy(p); err != nil {
		return err
	}
	c.policy = &p
	return nil
}

// cleanPolicy removes every rule that points at p.Table and every route in it.
func (c *NetlinkConfigurator) cleanPolicy(p PolicyRouting) error {
	var errs []error
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rules, err := c.h.RuleListFiltered(fam, &netlink.Rule{Table: p.Table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return fmt.Errorf("tun: policy routing: listing rules: %w", err)
		}
		for _, r := range rules {
			if err := c.h.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("tun: removing a stale rule to table %d: %w", p.Table, err))
			}
		}
		routes, err := c.h.RouteListFiltered(fam, &netlink.Route{Table: p.Table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return fmt.Errorf("tun: policy routing: listing table %d: %w", p.Table, err)
		}
		for _, r := range routes {
			if err := c.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("tun: removing a stale route from table %d: %w", p.Table, err))
			}
		}
	}
	return errors.Join(errs...)
}

// policyRule is the rule of family fam.
func policyRule(p PolicyRouting, fam int) *netlink.Rule {
	r := netlink.NewRule()
	r.Family = fam
	r.Table = p.Table
	r.Mark = p.Mark
	mask := uint32(0xffffffff)
	r.Mask = &mask
	r.Invert = true
	r.Priority = p.Priority
	return r
}

// ensureRule installs the policy rule of fam once (c.mu held).
func (c *NetlinkConfigurator) ensureRule(fam int) error {
	if c.policy == nil || slices.Contains(c.rules, fam) {
		return nil
	}
	if err := c.h.RuleAdd(policyRule(*c.policy, fam)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("tun: adding the rule not fwmark %#x lookup %d: %w", c.policy.Mark, c.policy.Table, err)
	}
	c.rules = append(c.rules, fam)
	return nil
}

// removeRules removes the policy rules c added (c.mu held).
func (c *NetlinkConfigurator) removeRules() error {
	var errs []error
	for _, fam := range c.rules {
		if err := c.h.RuleDel(policyRule(*c.policy, fam)); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("tun: removing the rule to table %d: %w", c.policy.Table, err))
		}
	}
	c.rules = nil
	return errors.Join(errs...)
}

// table is the routing table c's routes go to (0: main).
func (c *NetlinkConfigurator) table() int {
	if c.policy == nil {
		return 0
	}
	return c.policy.Table
}
