package daemon

import (
	"sync"
	"time"
)

// denyLogInterval is how often one uid's refusals are logged at most:
// a local user looping on requests it may not make would otherwise fill
// the journal, whose rate limit then drops tokd's other lines too. Every
// refusal is still counted in tokd_token_requests_total.
const denyLogInterval = time.Minute

// maxDenyLogUIDs bounds the uids denyLog remembers; past it, it forgets
// them all and starts again.
const maxDenyLogUIDs = 4096

// denyLog decides which refusals are logged: the first of a uid, then at
// most one per denyLogInterval, saying how many were not logged since.
type denyLog struct {
	mu   sync.Mutex // guards uids
	uids map[uint32]*denyLogEntry
}

type denyLogEntry struct {
	logged     time.Time // when this uid's last refusal was logged
	suppressed int       // refusals not logged since
}

// admit reports whether a refusal of uid at now is logged and, if so, how
// many of its refusals since the last one logged were not.
func (d *denyLog) admit(uid uint32, now time.Time) (log bool, suppressed int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.uids[uid]
	if e != nil && now.Sub(e.logged) < denyLogInterval && !now.Before(e.logged) {
		e.suppressed++
		return false, 0
	}
	if e == nil {
		if d.uids == nil || len(d.uids) >= maxDenyLogUIDs {
			d.uids = make(map[uint32]*denyLogEntry)
		}
		e = &denyLogEntry{}
		d.uids[uid] = e
	}
	suppressed, e.suppressed, e.logged = e.suppressed, 0, now
	return true, suppressed
}
