-- wf1_cancel: cancels a run that has not finished. A run without compensations is canceled at once; a
-- worker executing it is told to stop (and can commit nothing more: its token is revoked). A run with
-- compensations goes to 'compensating' and the next worker to take it runs them, then @OnFailure.
-- KEYS[1]  shard root
-- ARGV[1]  run id    ARGV[2] error (JSON text of the CanceledError)    ARGV[3] retention of a canceled run in ms
-- ARGV[4]  '1' when the workflow has @OnFailure: a run canceled at once is then queued, still canceled, for
--          a worker to run the hook
-- Reply: { 0, status } when nothing changed (finished, finalizing, unknown); otherwise
--        { 1, { child ids to cancel too: the first page }, hand-off to the parent's shard (as wf1_complete) or {},
--          cursor of the next page ('0': none) }
-- The cascade to the children goes a page of CASCADE_PAGE children at a time (ARCHITECTURE.md section 7: a
-- parent may have 10,000). A run with children is kept in the shard's cascade set ('<root>:cascade', by due
-- time; the run's 'cc' is the cursor from which its children are not all known to be canceled) until the
-- caller confirms the last page (wf1_cancel_more with 'done'); housekeeping hands a cascade whose caller
-- stopped to a worker, which goes on from 'cc' (wf1_tick). A page may be canceled twice, never skipped.
local CASCADE_PAGE = 64

-- A page of the run's children from `cursor` on, recording that the cascade stands there. Returns the
-- children and the next page's cursor ('0' after the last).
local function cascade_page(root, id, cursor, now)
  local page = rcall('SSCAN', children_key(root, id), cursor, 'COUNT', CASCADE_PAGE)
  if #page[2] > 0 or cursor ~= '0' then
    rcall('HSET', run_key(root, id), 'cc', cursor)
    rcall('ZADD', root .. ':cascade', ms(now + OUTBOX_RETRY_MS), id)
  end
  return page[2], page[1]
end

local function cancel(keys, argv)
  local root = keys[1]
  local id, err = argv[1], argv[2]
  local run = run_key(root, id)
  local f = rcall('HMGET', run, 'st', 'wf', 'pri', 'comp', 'fin', 'dl')
  if not f[1] then return { 0, 'unknown' } end
  if FINAL[f[1]] or f[5] then return { 0, f[1] } end
  local status, wf = f[1], f[2]
  local now = now_ms()
  if EXECUTING[status] then
    notify_workers(root, 'a' .. id .. '|canceled')
    rcall('ZREM', root .. ':leases', id)
  end
  rcall('ZREM', root .. ':timers', id)
  rcall('ZREM', run_ready_key(root, id, wf), id)
  forget_wait(root, id, run)
  local children, next_page = cascade_page(root, id, '0', now)
  if f[4] then
    rcall('HSET', run, 'st', 'compensating', 'fin', 'canceled', 'err', err, 'tok', '')
    count_move(root, wf, id, status, 'compensating')
    -- compensations are executed under a slot of the run's flow key: the one it holds (executing, or
    -- admitted), else a new one, as a woken run takes (a parked run gave its slot back)
    ready_run(root, id, wf, f[3], now)
    history(root, id, now, 'canceling', nil, err)
    return { 1, children, {}, next_page }
  end
  rcall('HSET', run, 'st', 'canceled', 'err', err, 'fa', now, 'tok', '')
  -- a run with @OnFailure keeps its flow key's slot (or its place in the key's queue) for it
  finish_run(root, id, wf, status, 'canceled', now, argv[3], f[6], nil, argv[4] == '1')
  history(root, id, now, 'canceled', nil, err)
  if argv[4] == '1' then
    rcall('HSET', run, 'fin', 'hook')
    -- under the run's slot of its flow key; a held run's hook waits its turn, a parked one's takes a slot
    ready_run(root, id, wf, f[3], now)
  end
  local handoff = notify_parent(root, id, wf, 'F', err, now)
  return { 1, children, handoff or {}, next_page }
end

-- wf1_cancel_more: the next page of a canceled run's children (see wf1_cancel).
-- KEYS[1]  shard root
-- ARGV[1]  run id    ARGV[2] the cursor of the page to take (the children before it are canceled), or 'done':
--          every page is canceled and the cascade ends
-- Reply: { next cursor ('0' after the last page), child ids... }, or { 'done' } when the run has no cascade
--        (ended already: a repeated call).
local function cancel_more(keys, argv)
  local root, id, cursor = keys[1], argv[1], argv[2]
  if not rcall('HGET', run_key(root, id), 'cc') then return { 'done' } end
  if cursor == 'done' then
    rcall('HDEL', run_key(root, id), 'cc')
    rcall('ZREM', root .. ':cascade', id)
    return { 'done' }
  end
  local children, next_page = cascade_page(root, id, cursor, now_ms())
  local reply = { next_page }
  for i = 1, #children do reply[i + 1] = children[i] end
  return reply
end

-- wf1_retry: a failed or canceled run goes back to the queue under the same id: attempt 1 again, its
-- history continued, its succeeded steps kept (the replay returns them); compensated steps run again.
-- KEYS[1]  shard root
-- ARGV[1]  run id
-- ARGV[2]  a version to move the run to ('' or absent = keep its own; see includes/00-versions.lua)
-- Reply: { 1 } queued again, or { 0, status } when the run is not failed or canceled.
local function retry(keys, argv)
  local root = keys[1]
  local id = argv[1]
  local run = run_key(root, id)
  local f = rcall('HMGET', run, 'st', 'wf', 'pri', 'fin')
  if f[1] ~= 'failed' and f[1] ~= 'canceled' then return { 0, f[1] or 'unknown' } end
  local now = now_ms()
  -- an @OnFailure still to run (or running) gives back the slot of the run's flow key it took
  if f[4] == 'hook' then flow_release(root, id, f[2], now, true) end
  if argv[2] and argv[2] ~= '' then move_run_version(root, id, run, f[2], f[1], argv[2]) end
  rcall('HSET', run, 'st', 'queued', 'att', '1')
  rcall('HINCRBY', run, 'ep', '1')
  -- 'fs': a final run keeps its flow slot field (flow_release); the retried run takes a slot anew
  rcall('HDEL', run, 'fin', 'err', 'fa', 'out', 'dl', 'wait', 'wn', 'ws', 'pg', 'fs')
  rcall('ZREM', root .. ':expiry', id)
  count_move(root, f[2], id, f[1], 'queued')
  ready_run(root, id, f[2], f[3], now)
  history(root, id, now, 'retried', { from = f[1] })
  return { 1 }
end

redis.register_function('wf1_cancel', cancel)
redis.register_function('wf1_cancel_more', cancel_more)
redis.register_function('wf1_retry', retry)
