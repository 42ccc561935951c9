//go:build !linux

package tun

import (
	"fmt"
	"runtime"
)

func newNativeConfigurator() (Configurator, error) {
	return nil, fmt.Errorf("tun: no native address and route configuration on %s yet; configure an updown hook", runtime.GOOS)
}
