package config

import "time"

// The keys of a mapping are read with a table of settings, in table order: when
// several keys are wrong, the first in the table is the one reported, and a key may
// depend on those before it (a connection's remote_addrs decides whether it is an
// initiator, which its vips and start_action then check). The order of a table is
// therefore part of the behaviour, and not always the order in which an unknown
// key's error lists the keys.

// A reader reads the value of one key into the destination it was made for.
type reader func(p *parser, v val) error

// A setting is one row of a table: a key and its reader, with need set for a required
// key (the message when the key is missing or null); or a check, run at its place in
// the table, of what the keys before it read.
type setting struct {
	key   string
	read  reader // nil: the key is only required
	need  string
	check func() error
}

// apply reads the keys of o with table, in order.
func (p *parser) apply(o *obj, table []setting) error {
	for _, s := range table {
		if s.check != nil {
			if err := s.check(); err != nil {
				return err
			}
			continue
		}
		v, ok := o.get(s.key)
		if !ok {
			if s.need != "" {
				return p.kerr(o, s.key, "%s", s.need)
			}
			continue
		}
		if s.read != nil {
			if err := s.read(p, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// kerr is an error about key of o, at the key's line (the mapping's when the key is
// absent).
func (p *parser) kerr(o *obj, key, format string, args ...any) *Error {
	return p.errf(o.keyLine(key), joinPath(o.v.path, key), format, args...)
}

// The kinds of simple keys.

// into reads a block (a mapping, a list) with read into dst.
func into[T any](read func(p *parser, v val, dst *T) error, dst *T) reader {
	return func(p *parser, v val) error { return read(p, v, dst) }
}

// boolKey reads true or false (or yes/no, on/off).
func boolKey(dst *bool) reader {
	return func(p *parser, v val) (err error) {
		*dst, err = p.boolean(v)
		return err
	}
}

// intKey reads an integer in [lo, hi].
func intKey[T ~int | ~uint16](dst *T, lo, hi int64) reader {
	return func(p *parser, v val) error {
		n, err := p.integer(v, lo, hi)
		if err != nil {
			return err
		}
		*dst = T(n)
		return nil
	}
}

// floatKey reads a number in [lo, hi].
func floatKey(dst *float64, lo, hi float64) reader {
	return func(p *parser, v val) (err error) {
		*dst, err = p.float(v, lo, hi)
		return err
	}
}

// durationKey reads a duration of 0 or more.
func durationKey(dst *time.Duration) reader {
	return func(p *parser, v val) (err error) {
		*dst, err = p.duration(v)
		return err
	}
}

// positiveDurationKey reads a duration of more than 0; example is one for the error.
func positiveDurationKey(dst *time.Duration, example string) reader {
	return func(p *parser, v val) error {
		d, err := p.duration(v)
		if err != nil {
			return err
		}
		if d == 0 {
			return p.verr(v, "must be more than 0, e.g. %s", example)
		}
		*dst = d
		return nil
	}
}

// enumKey reads one of the strings allowed.
func enumKey(dst *string, allowed ...string) reader {
	return func(p *parser, v val) (err error) {
		*dst, err = p.oneOf(v, allowed...)
		return err
	}
}

// stringKey reads a non-empty string.
func stringKey(dst *string) reader {
	return func(p *parser, v val) (err error) {
		*dst, err = p.str(v)
		return err
	}
}

// pathKey reads a path, resolved against the configuration's folder.
func pathKey(dst *string) reader {
	return func(p *parser, v val) error {
		s, err := p.str(v)
		if err != nil {
			return err
		}
		*dst = p.path(s)
		return nil
	}
}

// fileKey reads the path of an existing regular file, resolved against the
// configuration's folder.
func fileKey(dst *string) reader {
	return func(p *parser, v val) error {
		s, err := p.str(v)
		if err != nil {
			return err
		}
		*dst, err = p.file(item{s: s, path: v.path, line: v.line})
		return err
	}
}

// fileListKey reads a list of at least one existing regular file (each resolved
// against the configuration's folder); empty is the error for an empty list.
func fileListKey(dst *[]string, empty string) reader {
	return func(p *parser, v val) error {
		items, err := p.list(v, false)
		if err != nil {
			return err
		}
		for _, it := range items {
			f, err := p.file(it)
			if err != nil {
				return err
			}
			*dst = append(*dst, f)
		}
		if len(*dst) == 0 {
			return p.verr(v, "%s", empty)
		}
		return nil
	}
}
