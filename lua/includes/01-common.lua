-- Helpers shared by every function of the library.
--
-- Key layout. Every function receives the shard's root key as KEYS[1]: the hash tag itself, e.g.
-- '{wf:default:0}' (prefix, queue, partition). Nothing is stored under the root key; every key the
-- function touches is built from it, so all of them live in the root key's slot:
--   <root>:r:<runId>    run hash            <root>:s:<runId>  step records (hash)
--   <root>:h:<runId>    history (list)      <root>:q:<wf>     ready runs of a workflow (zset, priority order)
--   <root>:pv:<runId>   values the run published with ctx.setEvent (hash: key -> JSON)
--   <root>:timers       parked/scheduled runs by due time (zset)
--   <root>:leases       running runs by lease deadline (zset)
--   <root>:deadlines    runs by whole-run deadline (zset)
--   <root>:expiry       finished runs by expiry time (zset)
--   <root>:st:<wf>:<status>  runs of a workflow in a status (zset, score 0); sizes are the counts; every
--                       run is in exactly one, so their union lists all runs of the workflow
--   <root>:ik:<wf>      idempotency key -> run id (hash)
--   <root>:tp:<wf>:<kind>:<hour>  runs started/finished per minute (hash; see count_throughput)
--   <root>:lx           workflow -> leases that expired and housekeeping took back (hash; wf1_tick)
-- Channels (sharded pub/sub, same slot): <root>:w to workers ('r' a ready set has work again, 't<ms>' the
-- shard's earliest timer is now due then,
-- 'a<runId>|<reason>' stop executing that run), <root>:dv to result() waiters (a finished run, with its
-- outcome when small: see finish_run).
--
-- User payloads (inputs, outputs, step records, errors) are opaque strings here: never cjson-decoded.

-- redis.call does not exist yet while the library loads (its API then holds register_function and little
-- else), so the first call looks it up and puts it in place of this wrapper: every later call goes to it
-- directly, which spares a Lua call of about 0.08 µs per command (bench/NOTES.md, tenth round).
local rcall
rcall = function(...)
  rcall = redis.call
  return rcall(...)
end

-- Ready-set scores order by priority (higher first), then by time. 2^43 ms is 278 years, and
-- priorities span -500..500, so every score stays below 2^53 and is exact in a double.
local READY_EPOCH = 1704067200000
local PRIORITY_SPAN = 8796093022208

-- Arithmetic on TIME's texts converts them in the VM: tonumber and math.floor are C calls, which cost
-- Redis about 2,000 instructions more per call of the library (callgrind).
local function now_ms()
  local t = rcall('TIME')
  local us = t[2] + 0
  return t[1] * 1000 + (us - us % 1000) / 1000
end

-- Numbers go to redis.call as text made here: a Lua number argument is printed with '%.17g', which
-- costs Redis twice as much as this for the 13-digit times stored with every transition.
local function ms(n) return string.format('%d', n) end

local function run_key(root, id) return root .. ':r:' .. id end
local function steps_key(root, id) return root .. ':s:' .. id end
local function hist_key(root, id) return root .. ':h:' .. id end
-- the values a run published with ctx.setEvent, by key (hash; see lua/published.lua)
local function published_key(root, id) return root .. ':pv:' .. id end
local function ready_key(root, wf) return root .. ':q:' .. wf end

local function ready_score(priority, at)
  return (500 - (tonumber(priority) or 0)) * PRIORITY_SPAN + (at - READY_EPOCH)
end

-- Status indexes: one zset per workflow and status, every member at score 0, so that they sort by run id,
-- which is a ULID: by creation time. Listings page through them by id (ZREVRANGEBYLEX), and their sizes
-- are the counts by status.
local function status_key(root, wf, status) return root .. ':st:' .. wf .. ':' .. status end

-- The sorted sets that change on every claim and completion yet stay small (a shard's lease set and a
-- workflow's 'running' index hold about as many members as the workers have slots) are kept in Redis's
-- skiplist encoding. Below 128 members Redis keeps a sorted set as a listpack, where adding a member scans
-- the whole set (to look for it, then for its place) and rewrites it: with 50 slots, the two ZADDs cost a
-- one-step run about 7 % of its Redis instructions (callgrind, bench/NOTES.md, tenth round). A member
-- longer than zset-max-listpack-value (64 bytes by default) turns a sorted set into a skiplist for good;
-- this sentinel is added with every member those two sets get (a no-op once it is there). It sorts after
-- every run id (ids never start with '~'), scores +inf in the lease set (never due) and 0 in the index:
-- counts and listings of an index stop before '~' (ZLEXCOUNT / ZREVRANGEBYLEX up to '(~').
local SKIPLIST_SENTINEL = '~keeps-this-sorted-set-a-skiplist-as-it-is-longer-than-zset-max-listpack-value'
local BEFORE_SENTINEL = '(~'

-- `v`: the run's 'v' when the caller has it (false: none), nil to read it where needed (count_version).
local function count_move(root, wf, id, from, to, v)
  count_version(root, wf, id, from, to, v)
  if from then rcall('ZREM', status_key(root, wf, from), id) end
  if to == 'running' then
    rcall('ZADD', status_key(root, wf, to), '0', id, '0', SKIPLIST_SENTINEL)
  elseif to then
    rcall('ZADD', status_key(root, wf, to), '0', id)
  end
end

-- A run's history holds at most this many entries: past it, one 'history-truncated' entry is appended
-- and later entries are dropped, except the final outcome (succeeded, failed, canceled), which is always
-- kept. RPUSH answers the new length, so the cap costs no extra command until it is reached.
local MAX_HISTORY = 1000
local HISTORY_ALWAYS_KEPT = { succeeded = true, failed = true, canceled = true }

-- A run's first history entries are not written while they follow from its run hash: 'created' of a
-- run emitted queued ('ca'), its first 'claimed' ('sa', 'wk'; attempt 1) and then 'succeeded' ('fa').
-- The run hash field 'hn' says how many of them are implied (1 to 3). A run that lives only those
-- transitions, as most do, never gets a history list: three list writes and a key fewer per run. Any
-- other entry writes the implied ones first and drops 'hn'; readers build them the same way
-- (WorkflowStore.readHistory), from one atomic read of the hash and the list.
-- `known`: the fields 'ca', 'sa', 'wk', 'fa' when the caller has read them, nil to read them here.
local function implied_history(run, count, known)
  local f = known or rcall('HMGET', run, 'ca', 'sa', 'wk', 'fa')
  local entries = { '{"type":"created","at":' .. f[1] .. ',"status":"queued"}' }
  if count >= 2 then entries[2] = '{"type":"claimed","at":' .. f[2] .. ',"attempt":1,"workerId":' .. cjson.encode(f[3]) .. '}' end
  if count >= 3 then entries[3] = '{"type":"succeeded","at":' .. f[4] .. '}' end
  return entries
end

-- Writes the implied entries out (before a change of the fields they are built from, or before
-- `entry`, pushed with them when given) and drops 'hn'. Returns the list's new length.
local function write_implied_history(root, id, implied, entry, known)
  local run = run_key(root, id)
  rcall('HDEL', run, 'hn')
  local entries = implied_history(run, tonumber(implied), known)
  if entry then entries[#entries + 1] = entry end
  return rcall('RPUSH', hist_key(root, id), unpack(entries))
end

-- Appends one history entry: a JSON object built from our own scalars; raw_error is a JSON text made
-- by the client (an error object) and is embedded as it is. Kinds and field names are this library's
-- own identifiers (no escaping needed); string values may come from users and go through cjson.
-- `implied`: the run's 'hn' when the caller has read it (false: none), nil to look it up here; `known`
-- as for implied_history.
local function history(root, id, at, kind, fields, raw_error, implied, known)
  if implied == nil then implied = rcall('HGET', run_key(root, id), 'hn') end
  local parts = { '{"type":"', kind, '","at":', string.format('%d', at) }
  if fields then
    for name, value in pairs(fields) do
      if type(value) == 'number' and value == math.floor(value) then
        parts[#parts + 1] = ',"' .. name .. '":' .. string.format('%d', value)
      else
        parts[#parts + 1] = ',"' .. name .. '":' .. cjson.encode(value)
      end
    end
  end
  if raw_error and raw_error ~= '' then parts[#parts + 1] = ',"error":' .. raw_error end
  parts[#parts + 1] = '}'
  local key = hist_key(root, id)
  local length
  if implied then
    length = write_implied_history(root, id, implied, table.concat(parts), known)
  else
    length = rcall('RPUSH', key, table.concat(parts))
  end
  if length > MAX_HISTORY and not HISTORY_ALWAYS_KEPT[kind] then
    rcall('RPOP', key)
    -- the marker takes the first place past the cap, once
    if not rcall('LINDEX', key, MAX_HISTORY) then
      rcall('RPUSH', key, '{"type":"history-truncated","at":' .. string.format('%d', at) .. ',"limit":' .. MAX_HISTORY .. '}')
    end
  end
end

local function notify_workers(root, message)
  rcall('SPUBLISH', root .. ':w', message)
end

-- Workers are told about ready work only when a ready set stops being empty: a worker with free slots
-- claims on that message, and from then on claims again whenever a slot frees or a claim came back full,
-- until the set is empty. A burst of 10,000 emits then sends one message, not 10,000.
-- `added`: how many runs the caller has just added to the ready set `key`.
local function notify_if_was_empty(root, key, added)
  if rcall('ZCARD', key) == added then notify_workers(root, 'r') end
end

-- `v`: the run's 'v' when the caller has it (false: none), nil to read it (a pinned run has its own ready set).
local function make_ready(root, id, wf, priority, at, v)
  local key = run_ready_key(root, id, wf, v)
  rcall('ZADD', key, ms(ready_score(priority, at)), id)
  notify_if_was_empty(root, key, 1)
end

-- Sticky executions (ARCHITECTURE.md section 8). A worker that parks a run and keeps its execution in
-- memory (its handler suspended on the wait) asks the park to mark the run warm: 'ww' on the run is
-- '<fence>|<window ms>|<worker id>' (the fence of the claim that parked it; the worker id last, as it is
-- the only part that is not ours), and the run's delta set '<root>:sd:<id>' holds the step fields written
-- since that park that the worker has not seen (the park's own wait records, then every delivery). A wake
-- of a warm run queues it on that worker's sticky queue ('<root>:sq:<worker id>', scored as a ready set)
-- for `window` ms (a timer: the run is 'queued' while its timer is due), tells that worker alone
-- ('s<worker id>'), and housekeeping moves it to its ready set past the window (wake_due_timers in
-- tick.lua): a warm worker that died or is busy delays a run by the window (and the next tick) at most.
-- A claim of a warm run by its worker at the same fence sends only the delta records (see claim_run); any
-- other claim drops 'ww' and the delta and sends every record.
local function delta_key(root, id) return root .. ':sd:' .. id end
local function sticky_key(root, worker) return root .. ':sq:' .. worker end

-- The parts of a run's 'ww': fence, window in ms, worker id.
local function warm_parts(ww)
  local fence, window, worker = string.match(ww, '^(%d+)|(%d+)|(.*)$')
  return fence, tonumber(window), worker
end

-- Workers are told about a timer only when it becomes the shard's earliest: each worker keeps a tick for
-- the earliest due time it was told or that its last tick reported, and every tick reports the next one.
local function schedule_timer(root, id, due)
  local key = root .. ':timers'
  local first = rcall('ZRANGE', key, 0, 0, 'WITHSCORES')
  rcall('ZADD', key, ms(due), id)
  if not first[2] or due < tonumber(first[2]) or first[1] == id then
    notify_workers(root, 't' .. string.format('%d', due))
  end
end

-- Queues a warm run on its worker's sticky queue (see delta_key) instead of its ready set, with a timer at
-- the end of its window: a 'queued' run due in the timers is one whose window passed (wake_due_timers).
-- Workers are not told of that timer (schedule_timer would make every worker tick at the end of every
-- window, although the warm worker almost always claims the run first): their next tick finds it, within
-- a second (IDLE_TICK_MS in lib/worker/shard-housekeeping.ts).
local function make_ready_warm(root, id, priority, at, ww)
  local _, window, worker = warm_parts(ww)
  rcall('ZADD', sticky_key(root, worker), ms(ready_score(priority, at)), id)
  rcall('ZADD', root .. ':timers', ms(at + window), id)
  notify_workers(root, 's' .. worker)
end

local FINAL = { succeeded = true, failed = true, canceled = true }
local EXECUTING = { running = true, compensating = true }

-- The presented token must be the run's current one and the run must be executing under a lease that
-- has not expired (judged by this server's clock); returns why not, or nil. A run canceled at once whose
-- workflow has @OnFailure ('fin' = 'hook') is leased, still canceled, to a worker that runs the hook.
local function lease_refused(token, now, tok, st, lu, fin)
  if not st then return 'NO_RUN' end
  if tok ~= token then return 'STALE_TOKEN' end
  if not EXECUTING[st] and not (st == 'canceled' and fin == 'hook') then return 'NOT_EXECUTING:' .. st end
  if tonumber(lu) < now then return 'LEASE_EXPIRED' end
  return nil
end

-- The lease check for a caller that goes on with the run's fields: returns them, or nil and the reason.
-- f[11] is the parent's step waiting for this run (nil when no parent waits), f[12] the run's implied
-- history entries ('hn', see history), f[13] the parent's shard root.
local function check_lease(run, token, now)
  local f = rcall('HMGET', run, 'tok', 'st', 'lu', 'wf', 'pri', 'dl', 'par', 'att', 'max', 'fin', 'pf', 'hn', 'pr')
  local refused = lease_refused(token, now, f[1], f[2], f[3], f[10])
  if refused then return nil, refused end
  return f
end

-- lease_refused for a caller that has not read 'fin': it matters only to a canceled run, and a field the
-- run does not have costs HMGET a scan of the whole run hash, so it is looked up for a canceled run alone.
-- Returns the reason as lease_refused does, and 'fin' (false when not read).
local function lease_refused_reading_fin(run, token, now, tok, st, lu)
  local fin = st == 'canceled' and rcall('HGET', run, 'fin')
  return lease_refused(token, now, tok, st, lu, fin), fin
end

-- The lease check for a caller that reads only the fields it uses: each field HMGET looks for costs Redis
-- about 2,000 instructions (a scan of the run hash's compact encoding, a whole one for a field the run
-- does not have, and an element of the reply), so the caller names what it needs besides the three the
-- check reads, and 'fin' is looked up only for a canceled run (see lease_refused_reading_fin).
-- Returns the HMGET reply ('tok', 'st', 'lu', then the named fields in their order) and the reason the
-- lease is refused, or nil when it is held.
local function read_under_lease(run, token, now, ...)
  local f = rcall('HMGET', run, 'tok', 'st', 'lu', ...)
  return f, lease_refused_reading_fin(run, token, now, f[1], f[2], f[3])
end

-- check_lease for a caller that needs none of the run's fields (a step commit, a heartbeat).
-- Returns true, or nil and the reason.
local function holds_lease(run, token, now)
  local _, refused = read_under_lease(run, token, now)
  if refused then return nil, refused end
  return true
end

-- Gives a finished run's flow-control slot to its key's next run (includes/01-flow.lua, assigned there).
local flow_release

-- A done message on ':dv' carries the final state and its output or error when they are this small, so that a
-- result() waiter settles without reading the run; larger ones announce only the id (the waiter reads).
local DONE_PAYLOAD_MAX = 2048

-- Throughput: runs started (first claim), succeeded, failed and canceled per minute, per workflow, for the
-- dashboard's and the CLI's last hour (lib/client/throughput-reader.ts). One hash per (workflow, kind,
-- hour of the Redis clock), field = minute of that hour (0-59), so a hash stays a small listpack; it
-- expires at the end of the next hour, so a shard keeps at most two per workflow and kind. Cost per
-- counted transition: one HINCRBY, plus one PEXPIREAT when it opens a minute (the first count of it).
--   <root>:tp:<wf>:<kind>:<hour>   kind 'b' started, 's' succeeded, 'f' failed, 'c' canceled
local HOUR_MS = 3600000
local THROUGHPUT_KIND = { succeeded = 's', failed = 'f', canceled = 'c' }

local function count_throughput(root, wf, kind, now)
  local in_hour = now % HOUR_MS
  local hour = (now - in_hour) / HOUR_MS
  local key = root .. ':tp:' .. wf .. ':' .. kind .. ':' .. string.format('%d', hour)
  -- '1', not 1: Redis prints a number argument with snprintf('%.17g'), about 2,000 instructions
  if rcall('HINCRBY', key, string.format('%d', (in_hour - in_hour % 60000) / 60000), '1') == 1 then
    rcall('PEXPIREAT', key, ms((hour + 2) * HOUR_MS))
  end
end

-- Bookkeeping shared by every final state: out of the lease and deadline sets, counted, due to expire,
-- and announced to result() waiters: '<id>' or '<id>|<final state>|<output or error JSON>'.
local function finish_run(root, id, wf, from, to, now, retention_ms, deadline, payload, keep_slot)
  rcall('ZREM', root .. ':leases', id)
  if deadline then rcall('ZREM', root .. ':deadlines', id) end
  flow_release(root, id, wf, now, true, EXECUTING[from], keep_slot)
  count_move(root, wf, id, from, to)
  count_throughput(root, wf, THROUGHPUT_KIND[to], now)
  rcall('ZADD', root .. ':expiry', ms(now + (tonumber(retention_ms) or 0)), id)
  if payload and payload ~= '' and #payload <= DONE_PAYLOAD_MAX then
    rcall('SPUBLISH', root .. ':dv', id .. '|' .. to .. '|' .. payload)
  else
    rcall('SPUBLISH', root .. ':dv', id)
  end
end
