package dnsd

import (
	"slices"
	"sync"
)

// MemorySource is a ZoneSource held in memory, for tests, benchmarks and a node
// running before the replicated zone store is wired.
type MemorySource struct {
	mu      sync.Mutex
	version uint64
	zones   map[string]*Zone
}

// NewMemorySource returns a source holding copies of zones.
func NewMemorySource(zones ...Zone) *MemorySource {
	m := &MemorySource{zones: map[string]*Zone{}}
	for _, z := range zones {
		m.Set(z)
	}
	return m
}

// Set adds or replaces the zone with z.Origin.
func (m *MemorySource) Set(z Zone) {
	z.Records = slices.Clone(z.Records)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.zones[z.Origin] = &z
	m.version++
}

// Delete removes the zone origin.
func (m *MemorySource) Delete(origin string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.zones, origin)
	m.version++
}

// Version implements ZoneSource.
func (m *MemorySource) Version() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.version
}

// Zones implements ZoneSource.
func (m *MemorySource) Zones() []*Zone {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Zone, 0, len(m.zones))
	for _, z := range m.zones {
		out = append(out, z)
	}
	return out
}
