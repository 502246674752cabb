package client

// Eviction of idle services from the discovery cache (WithCacheIdleTimeout):
// acquire, in cache.go, holds a service; release lets go of it, and the last
// release starts an idle period at whose end expire evicts the service
// unless it has been used since.

// release ends one hold of e taken by acquire. The last one starts e's idle
// period.
func (d *discovery) release(e *serviceCache) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e.users--
	e.lastUsed = d.clock.Now()
	if e.users == 0 && d.idle > 0 && e.idleTimer == nil && d.ctx.Err() == nil {
		e.idleTimer = d.clock.AfterFunc(d.idle, func() { d.expire(e) })
	}
}

// beforeExpire, when set by a test, runs when an idle timer fires, before
// the service's use is looked at.
var beforeExpire func(*serviceCache)

// expire evicts e if nobody holds it and it has not been used for d.idle.
// Its timer was armed at the start of an idle period, and lookups since do
// not re-arm it: it looks at the last use now, and waits for the rest.
func (d *discovery) expire(e *serviceCache) {
	if beforeExpire != nil {
		beforeExpire(e)
	}
	d.mu.Lock()
	e.idleTimer = nil
	if d.services[e.key] != e || e.users > 0 || d.ctx.Err() != nil {
		// Evicted or held: the last release arms a timer again.
		d.mu.Unlock()
		return
	}
	if idle := d.clock.Now().Sub(e.lastUsed); idle < d.idle {
		e.idleTimer = d.clock.AfterFunc(d.idle-idle, func() { d.expire(e) })
		d.mu.Unlock()
		return
	}
	delete(d.services, e.key)
	d.mu.Unlock()
	e.logger.Debug("idle service evicted from the cache", "idle", d.idle)
	e.close()
}

// stopTimers stops the idle timers of a closed client.
func (d *discovery) stopTimers() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range d.services {
		if e.idleTimer != nil {
			e.idleTimer.Stop()
			e.idleTimer = nil
		}
	}
}

// close ends the watch of an evicted service, and its hold of an update.
func (e *serviceCache) close() {
	e.stop()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.holdTimer != nil {
		e.holdTimer.Stop()
	}
}
