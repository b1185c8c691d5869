-- Events live in the event shard ('{<prefix>:~events}', a name no queue can take), one log per (event, key):
--   <root>:ev:<len>:<event>:<key>:log  sent events in the order they were sent (zset of event ids, scored
--                                      by their position: see next_position)
--   <root>:ev:<len>:<event>:<key>:pay  event id -> payload (hash), and '~last' -> the last event's position
--   <root>:ev:<len>:<event>:<key>:wt   '<run id>|<field>' -> '<threshold>|<run's shard root>' (hash)
--   <root>:eid:<len>:<event>:<id>      a send's own id (sendEvent's { id }), kept for the event retention:
--                                      a send of the same id meanwhile delivers nothing (string, '1')
-- A parking run registers its wait here and, in the same call, gets any logged event past its
-- threshold; a send logs the event and takes the waiters registered here. Either the send sees the
-- waiter or the waiter sees the event.
--
-- Positions and thresholds. An event's position is the server's ms when it was sent, made strictly greater
-- than the position of the log's previous event by steps of 1/1024 ms when several share a millisecond
-- (like a stream id '<ms>-<seq>' packed in one double: exact up to 2^43 ms, the year 2248). Events thus
-- sort in the order they were sent, and a position names one event. A threshold, in ZRANGEBYSCORE's
-- syntax, is either '(<position>' (after the event the run's previous wait for this (event, key)
-- received) or '<ms>' (sent at or after that millisecond: the run's creation, see WorkflowStore.waitEvent).
local POSITION_STEP = 1 / 1024

local function event_base(root, event, key)
  return root .. ':ev:' .. string.len(event) .. ':' .. event .. ':' .. key
end

-- Positions are written exactly, with integer formats only (C's '%.17g' costs Redis thousands of
-- instructions): whole milliseconds as integers, a fraction k/1024 as its 10 decimals (k * 9765625).
-- Read back (by Redis, Lua or JSON.parse) they are the same double.
local function position_text(position)
  local whole = position - position % 1
  if whole == position then return ms(position) end
  return ms(whole) .. '.' .. string.format('%010d', (position - whole) * 1024 * 9765625)
end

-- The payload hash's field that holds the position of the log's last event: read with the repeat check,
-- written with the payload (a field no event id takes: ids are ULIDs), so a send costs no command more.
local LAST_POSITION = '~last'

-- The position of an event sent now: after the log's last one (`last`, its text or nil), even within
-- the same millisecond.
local function next_position(last, now)
  if last then
    local after = tonumber(last) + POSITION_STEP
    if after > now then return after end
  end
  return now
end

-- Whether an event at `position` is past a threshold (see above).
local function past_threshold(position, threshold)
  if string.sub(threshold, 1, 1) == '(' then return position > tonumber(string.sub(threshold, 2)) end
  return position >= tonumber(threshold)
end

-- 'th': the event's position, from which the run's next wait for this (event, key) goes on.
local function event_record(event, key, event_id, position, payload)
  return '{"k":"event","s":"succeeded","ev":' .. cjson.encode(event) .. ',"key":' .. cjson.encode(key) ..
    ',"id":' .. cjson.encode(event_id) .. ',"th":' .. position_text(position) ..
    ',"r":' .. (payload ~= '' and payload or 'null') .. '}'
end

-- The record of an event whose payload the receiving shard keeps once (see includes/04-shared-payloads.lua).
local function event_record_by_reference(event, key, event_id, position)
  return '{"k":"event","s":"succeeded","ev":' .. cjson.encode(event) .. ',"key":' .. cjson.encode(key) ..
    ',"id":' .. cjson.encode(event_id) .. ',"th":' .. position_text(position) .. ',"rp":' .. cjson.encode(event_id) .. '}'
end

-- An event reaches its waiters EVENT_WAITERS_PER_CALL at a time (ARCHITECTURE.md section 7: one send to
-- 10,000 waiters took 186 ms in one call and copied the payload into an outbox message per waiter, +247 MB
-- for a 10 KB payload, enough to push a 100 MB Redis into OOM halfway). The send takes the first page of
-- waiters; while more remain, the event is in the fan-out set ('<root>:fanout', event id by due time;
-- '<root>:fo:<event id>' holds the HSCAN cursor of its waiters) and wf1_send_event_more takes the next page,
-- called by the sender at once and by housekeeping (wf1_tick) when the sender stopped. A page's hand-offs
-- are outbox messages that name the event instead of carrying its payload ('{"p":1,...}'); the payload
-- stays once in the event's log, and '<root>:evm:<event id>' keeps the event's name, key and time for
-- housekeeping to rebuild a record (event_outbox_message).
local EVENT_WAITERS_PER_CALL = 64

local function event_meta_key(root, event_id) return root .. ':evm:' .. event_id end
local function fanout_key(root, event_id) return root .. ':fo:' .. event_id end

-- Takes up to EVENT_WAITERS_PER_CALL waiters of (event, key) from one page of their hash from `cursor` on,
-- each waiting past its threshold for the event at `position`: their hand-offs go to the outbox (due at `due`) and into
-- `reply`. Returns the cursor to go on from and whether the waiters are all taken. A compact hash (up to
-- hash-max-listpack-entries, 512 by default) comes whole in one page: the rest of a page is taken by the
-- next call from the same cursor (the waiters taken are gone from the hash by then).
-- `by_reference`: the records name the event instead of carrying its payload.
local function take_waiters(root, base, event, key, event_id, position, payload, cursor, due, reply, by_reference)
  local page = rcall('HSCAN', base .. ':wt', cursor, 'COUNT', EVENT_WAITERS_PER_CALL)
  local waiters, json, taken = page[2], nil, 0
  for i = 1, #waiters, 2 do
    local waiter, spec = waiters[i], waiters[i + 1]
    local threshold, run_root = string.match(spec, '^([^|]*)|(.*)$')
    if taken == EVENT_WAITERS_PER_CALL then return cursor, false end
    if past_threshold(position, threshold) then
      taken = taken + 1
      local bar = string.find(waiter, '|', 1, true)
      local run_id, field = string.sub(waiter, 1, bar - 1), string.sub(waiter, bar + 1)
      json = json or (by_reference and event_record_by_reference(event, key, event_id, position) or event_record(event, key, event_id, position, payload))
      local message_id = event_id .. '|' .. waiter
      rcall('ZADD', root .. ':outbox', ms(due), message_id)
      rcall('HSET', root .. ':obx', message_id, '{"p":1,"t":' .. cjson.encode(run_root) .. ',"r":' .. cjson.encode(run_id) ..
        ',"f":' .. cjson.encode(field) .. ',"s":"S","k":"event"}')
      rcall('HDEL', base .. ':wt', waiter)
      reply[#reply + 1] = { run_root, run_id, field, json, message_id }
    end
  end
  return page[1], page[1] == '0'
end

-- The hand-off an outbox message stands for, as the caller delivers it: a message that names an event
-- ('{"p":1,...}') gets its record, rebuilt from the event's log; '' when the event has expired meanwhile.
-- `records`: the records rebuilt so far in this call, by event id (the messages of one event share one).
local function event_outbox_message(root, message_id, message, records)
  if string.sub(message, 1, 7) ~= '{"p":1,' then return message end
  local event_id = string.match(message_id, '^([^|]*)|')
  local record = records[event_id]
  if record == nil then
    local meta = rcall('HMGET', event_meta_key(root, event_id), 'ev', 'key', 'at')
    local payload = meta[1] and rcall('HGET', event_base(root, meta[1], meta[2]) .. ':pay', event_id)
    record = payload and cjson.encode(event_record(meta[1], meta[2], event_id, tonumber(meta[3]), payload)) or false
    records[event_id] = record
  end
  if not record then return '' end
  return string.sub(message, 1, -2) .. ',"x":' .. record .. '}'
end

-- Takes the next page of an event's waiters from its fan-out (see EVENT_WAITERS_PER_CALL) into `reply`;
-- the fan-out ends with its last page, else it is due again at `again` (for housekeeping, should the caller
-- stop). `due`: when the page's outbox messages are due. Returns false when the event has no fan-out (over,
-- or never had one).
local function continue_fanout(root, event_id, due, again, reply, by_reference)
  local cursor = rcall('HGET', fanout_key(root, event_id), 'c')
  local meta = cursor and rcall('HMGET', event_meta_key(root, event_id), 'ev', 'key', 'at')
  if not cursor or not meta[1] then
    rcall('ZREM', root .. ':fanout', event_id)
    if cursor then rcall('DEL', fanout_key(root, event_id)) end
    return false
  end
  local base = event_base(root, meta[1], meta[2])
  local payload = rcall('HGET', base .. ':pay', event_id) or ''
  local next_cursor, all_taken = take_waiters(root, base, meta[1], meta[2], event_id, tonumber(meta[3]), payload, cursor, due, reply, by_reference)
  if all_taken then
    rcall('DEL', fanout_key(root, event_id))
    rcall('ZREM', root .. ':fanout', event_id)
  else
    rcall('HSET', fanout_key(root, event_id), 'c', next_cursor)
    rcall('ZADD', root .. ':fanout', ms(again), event_id)
  end
  return true
end

-- wf1_send_event: logs an event and hands it to the runs waiting for it (the first page of them).
-- KEYS[1]  event shard root
-- ARGV[1]  event id (generated by the client; it is also the request id: a resent call changes nothing)
-- ARGV[2]  event name    ARGV[3] key ('' = none)    ARGV[4] payload (JSON text, opaque)
-- ARGV[5]  retention in ms
-- ARGV[6]  optional: 'ref' when the records handed to the waiters are to name the event instead of carrying
--          its payload; the caller then delivers the payload once per receiving shard with each record
--          (wf1_deliver's ARGV[6..7]; see includes/04-shared-payloads.lua)
-- ARGV[7]  optional: the sender's own id for the event ('' = none): a send whose id was sent already for this
--          event name within ARGV[5] ms delivers nothing (the reply is a repeat). Kept as
--          '<root>:eid:<len>:<event>:<id>' (a string key that expires with the event's retention).
-- Reply: { 1 | 2 (more waiters to come: see wf1_send_event_more) | 0 (a repeat of an earlier call), sent at ms,
--        { run root, run id, field, record, message id }, ... }
--        one entry per waiting run taken: the caller delivers each with wf1_deliver on the run's shard and then
--        acknowledges it with wf1_ack here; housekeeping delivers what a crashed caller did not.
local function send_event(keys, argv)
  local root = keys[1]
  local event_id, event, key, payload, retention = argv[1], argv[2], argv[3], argv[4], tonumber(argv[5])
  local base = event_base(root, event, key)
  local logged = rcall('HMGET', base .. ':pay', event_id, LAST_POSITION)
  if logged[1] then
    return { 0, tonumber(rcall('ZSCORE', base .. ':log', event_id)) or 0 }
  end
  local now = now_ms()
  local send_id = argv[7]
  if send_id and send_id ~= '' then
    -- the first write, and the only one of a repeat: SET NX decides which send of the id delivers
    local dedupe = root .. ':eid:' .. string.len(event) .. ':' .. event .. ':' .. send_id
    if not rcall('SET', dedupe, '1', 'NX', 'PX', math.max(retention, 1)) then return { 0, 0 } end
  end
  local expired = rcall('ZRANGEBYSCORE', base .. ':log', '-inf', now - retention, 'LIMIT', 0, 100)
  if #expired > 0 then
    rcall('ZREM', base .. ':log', unpack(expired))
    rcall('HDEL', base .. ':pay', unpack(expired))
  end
  local position = next_position(logged[2], now)
  local position_at = position_text(position)
  rcall('ZADD', base .. ':log', position_at, event_id)
  rcall('HSET', base .. ':pay', event_id, payload, LAST_POSITION, position_at)
  rcall('PEXPIRE', base .. ':log', retention)
  rcall('PEXPIRE', base .. ':pay', retention)
  local reply = { 1, now }
  if rcall('EXISTS', base .. ':wt') == 0 then return reply end
  local meta = event_meta_key(root, event_id)
  rcall('HSET', meta, 'ev', event, 'key', key, 'at', position_at)
  rcall('PEXPIRE', meta, retention)
  local cursor, all_taken = take_waiters(root, base, event, key, event_id, position, payload, '0', now + OUTBOX_RETRY_MS, reply, argv[6] == 'ref')
  if not all_taken then
    reply[1] = 2
    rcall('HSET', fanout_key(root, event_id), 'c', cursor)
    rcall('PEXPIRE', fanout_key(root, event_id), retention)
    rcall('ZADD', root .. ':fanout', ms(now + OUTBOX_RETRY_MS), event_id)
  end
  return reply
end

-- wf1_send_event_more: the next page of an event's waiters (see EVENT_WAITERS_PER_CALL).
-- KEYS[1]  event shard root
-- ARGV[1]  event id    ARGV[2] optional: 'ref' as wf1_send_event's ARGV[6]
-- Reply: as wf1_send_event's: { 2 (more to come) | 1 (the last page) | 0 (no fan-out: over already), sent at ms
--        (0 when over), entries... }. Each call takes the page after the last one taken, whoever took it: a
--        reply lost on its way leaves its hand-offs in the outbox, for housekeeping to deliver.
local function send_event_more(keys, argv)
  local root, event_id = keys[1], argv[1]
  local now = now_ms()
  local reply = { 2, 0 }
  if not continue_fanout(root, event_id, now + OUTBOX_RETRY_MS, now + OUTBOX_RETRY_MS, reply, argv[2] == 'ref') then return { 0, 0 } end
  reply[2] = tonumber(rcall('HGET', event_meta_key(root, event_id), 'at')) or 0
  if rcall('EXISTS', fanout_key(root, event_id)) == 0 then reply[1] = 1 end
  return reply
end

-- wf1_wait_event: registers a run's wait for (event, key), or answers it at once with the earliest
-- event logged past the threshold.
-- KEYS[1]  event shard root
-- ARGV[1]  event name    ARGV[2] key ('' = none)    ARGV[3] run id    ARGV[4] step field
-- ARGV[5]  threshold: '(<position>' (events after that one) or '<ms>' (events sent at or after it)
-- ARGV[6]  the run's shard root
-- Reply: { 1, record } when an event matched (the record to commit as the step's result), or { 0 } when
--        the wait is registered and a later send will deliver the event to the run.
local function wait_event(keys, argv)
  local root = keys[1]
  local event, key, run_id, field, threshold, run_root = argv[1], argv[2], argv[3], argv[4], argv[5], argv[6]
  local base = event_base(root, event, key)
  local found = rcall('ZRANGEBYSCORE', base .. ':log', threshold, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if found[1] then
    local payload = rcall('HGET', base .. ':pay', found[1])
    if payload then
      return { 1, event_record(event, key, found[1], tonumber(found[2]), payload) }
    end
  end
  rcall('HSET', base .. ':wt', run_id .. '|' .. field, threshold .. '|' .. run_root)
  return { 0 }
end

redis.register_function('wf1_send_event', send_event)
redis.register_function('wf1_send_event_more', send_event_more)
redis.register_function('wf1_wait_event', wait_event)
