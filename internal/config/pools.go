package config

func (p *parser) pools(v val, dst *[]Pool) error {
	elems, err := p.seq(v, "of pools, each with name, addrs and dns")
	if err != nil {
		return err
	}
	out := make([]Pool, 0, len(elems))
	for _, e := range elems {
		pool, err := p.pool(e, out)
		if err != nil {
			return err
		}
		out = append(out, pool)
	}
	*dst = out
	return nil
}

// pool reads one entry of pools; defined are those before it.
func (p *parser) pool(e val, defined []Pool) (Pool, error) {
	var pool Pool
	o, err := p.object(e, "name, addrs, dns", "name", "addrs", "dns")
	if err != nil {
		return pool, err
	}
	err = p.apply(o, []setting{
		{key: "name", need: "missing; every pool needs a name", read: func(p *parser, v val) (err error) {
			if pool.Name, err = p.str(v); err != nil {
				return err
			}
			if !validName(pool.Name) {
				return p.verr(v, "%q is not a valid name; use 1..64 letters, digits, '.', '_' or '-'", pool.Name)
			}
			for _, q := range defined {
				if q.Name == pool.Name {
					return p.verr(v, "a pool named %q is already defined", pool.Name)
				}
			}
			return nil
		}},
		{key: "addrs", need: "missing; give the pool's prefix(es), e.g. 198.18.100.0/24", read: func(p *parser, v val) error {
			items, err := p.list(v, true)
			if err != nil {
				return err
			}
			for _, it := range items {
				pf, err := p.prefix(it, true, false)
				if err != nil {
					return err
				}
				for _, q := range pool.Addrs {
					if q.Overlaps(pf) {
						return p.ierr(it, "%s overlaps %s", pf, q)
					}
				}
				for _, q := range defined {
					for _, qa := range q.Addrs {
						if qa.Overlaps(pf) {
							return p.ierr(it, "%s overlaps %s of pool %q; two pools must never hand out the same address", pf, qa, q.Name)
						}
					}
				}
				pool.Addrs = append(pool.Addrs, pf)
			}
			return nil
		}},
		{key: "dns", read: func(p *parser, v val) error {
			items, err := p.list(v, true)
			if err != nil {
				return err
			}
			pool.DNS, err = p.addrs(items, false)
			return err
		}},
	})
	return pool, err
}
