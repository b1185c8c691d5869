-- wf1_park: the run waits for sleeps, child runs and events. Its lease is released and no worker holds
-- it until a timer, a child or an event wakes it. Waits that were resolved before the run got here (a
-- child that finished first, an event delivered while the run was on its way) are taken into account:
-- if the wait is already over, the run goes straight back to its ready set instead of waiting.
-- KEYS[1]  shard root
-- ARGV[1]  run id    ARGV[2] fencing token
-- ARGV[3]  what the run waits for (JSON text, shown as RunInfo.waitingFor)
-- ARGV[4..] groups of 3, one per wait: kind, step field, spec
--          'sleep', field, 'in:<ms>' | 'at:<ms>'           a sleep; its record stores the wake-up time
--          'child', field, '<child id>|<timeout ms or empty>|<workflow>'
--          'event', field, JSON text {"ev":..,"key":..,"to":<timeout ms or null>} (our own, decoded here)
--          'spawn', field, spec as for 'child', then the 12 arguments of wf1_emit for that child: a child
--          in this shard that the run starts as it parks (created first, as wf1_emit would; an existing
--          run id creates nothing), then waited for as 'child'.
--          A wait without a record gets a waiting record ('W'); an existing record is left as it is.
-- Reply: { 1, wake-up ms or -1 } parked; { 2 } the wait was already over and the run is queued again;
--        { 0, reason } the caller no longer holds the run.
local function park(keys, argv)
  local root = keys[1]
  local id, token = argv[1], argv[2]
  local run = run_key(root, id)
  local now = now_ms()
  local f, reason = check_lease(run, token, now)
  if not f then
    local g = rcall('HMGET', run, 'tok', 'st')
    if g[1] == token and (g[2] == 'waiting' or g[2] == 'queued') then return { g[2] == 'waiting' and 1 or 2, -1 } end
    return { 0, reason }
  end
  local steps = steps_key(root, id)
  local due = nil
  local wake = false
  local children, children_open = 0, 0
  local open_fields = {}
  local i = 4
  while i <= #argv do
    local kind, field, spec = argv[i], argv[i + 1], argv[i + 2]
    i = i + 3
    if kind == 'spawn' then
      emit(keys, { unpack(argv, i, i + 11) }, now)
      i = i + 12
      kind = 'child'
    end
    local current = rcall('HGET', steps, field)
    local state = record_state(current)
    local deadline = nil
    if not current then
      if kind == 'sleep' then
        local amount = tonumber(string.sub(spec, 4))
        deadline = amount
        if string.sub(spec, 1, 3) == 'in:' then deadline = now + amount end
        store_record(root, id, field, now, 'W', '{"k":"sleep","s":"waiting","u":' .. string.format('%d', deadline) .. '}')
      elseif kind == 'child' then
        local child_id, timeout, wf = string.match(spec, '^([^|]*)|([^|]*)|(.*)$')
        local json = '{"k":"child","f":' .. cjson.encode('child:' .. wf) .. ',"s":"waiting","id":' .. cjson.encode(child_id)
        if timeout ~= '' then
          deadline = now + tonumber(timeout)
          json = json .. ',"dl":' .. string.format('%d', deadline)
        end
        store_record(root, id, field, now, 'W', json .. '}')
        rcall('SADD', children_key(root, id), child_id)
      else
        local wait = cjson.decode(spec)
        local json = '{"k":"event","s":"waiting","ev":' .. cjson.encode(wait.ev) .. ',"key":' .. cjson.encode(wait.key or '')
        if type(wait.to) == 'number' then
          deadline = now + wait.to
          json = json .. ',"dl":' .. string.format('%d', deadline)
        end
        store_record(root, id, field, now, 'W', json .. '}')
      end
      state = 'W'
    elseif state == 'W' then
      deadline = tonumber(string.match(current, '"[ud]l?":(%d+)'))
    end
    if kind == 'child' then children = children + 1 end
    if state == 'W' then
      if kind == 'child' then children_open = children_open + 1 end
      if kind ~= 'sleep' then open_fields[#open_fields + 1] = field end
      if deadline and (not due or deadline < due) then due = deadline end
    elseif kind ~= 'child' or state == 'F' then
      wake = true
    end
  end
  if children > 0 and children_open == 0 then wake = true end
  if due and due <= now then wake = true end

  rcall('ZREM', root .. ':leases', id)
  if wake then
    rcall('HSET', run, 'st', 'queued')
    count_move(root, f[4], id, f[2], 'queued')
    make_ready(root, id, f[4], f[5], now)
    history(root, id, now, 'resumed', { reason = 'wait already over' }, nil, f[12] or false)
    return { 2 }
  end
  rcall('DEL', awaited_key(root, id))
  if #open_fields > 0 then rcall('SADD', awaited_key(root, id), unpack(open_fields)) end
  rcall('HSET', run, 'st', 'waiting', 'wait', argv[3], 'wn', ms(children_open))
  count_move(root, f[4], id, f[2], 'waiting')
  if due then schedule_timer(root, id, due) end
  history(root, id, now, 'parked', { waitingFor = argv[3], wakeAt = due }, nil, f[12] or false)
  return { 1, due or -1 }
end

redis.register_function('wf1_park', park)
