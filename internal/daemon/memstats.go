package daemon

import (
	"runtime"
	"runtime/metrics"

	"github.com/mobikevpn/mobikevpn/internal/control"
)

// memStats reads the Go runtime's view of the daemon's memory: the heap that was live
// after the last garbage collection (what the SAs really use), the heap in use now and
// the goroutines.
func memStats() control.Runtime {
	samples := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/total:bytes"},
	}
	metrics.Read(samples)
	val := func(i int) uint64 {
		if samples[i].Value.Kind() == metrics.KindUint64 {
			return samples[i].Value.Uint64()
		}
		return 0
	}
	return control.Runtime{
		HeapLiveBytes:    val(0),
		HeapObjectsBytes: val(1),
		TotalBytes:       val(2),
		Goroutines:       runtime.NumGoroutine(),
	}
}
