package cluster

import "go.uber.org/zap"

// quietLogger keeps the etcd client's own logging (zap, to stderr) out of the daemon's
// log: the coordinator reports what matters through its errors.
func quietLogger() *zap.Logger { return zap.NewNop() }
