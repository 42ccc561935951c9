//go:build !linux

package system

import "errors"

func setMark(uintptr, uint32) error { return errors.New("packet marks are Linux only") }
