-- A run's waitForAny races child runs, events and sleeps (lib/execution/races.ts). Its events are ordinary
-- waits registered with wf1_wait_event and its sleeps ordinary sleeps; a raced run is registered here, as a
-- run that another parent joined is (includes/04-child-waiters.lua), and parked on as an 'any' wait
-- (wf1_park). The waits that lose the race are forgotten with wf1_forget_waiter.
-- In a block of its own: the library is one Lua chunk, whose main function may hold at most 200
-- locals; nothing of this file is used by another.
do

-- wf1_wait_run: registers a run's wait for the outcome of the run `id` (in this shard), or answers it at
-- once when that run has finished.
-- KEYS[1]  the raced run's shard root
-- ARGV[1]  raced run id    ARGV[2] waiting run id    ARGV[3] its step field    ARGV[4] its shard root
-- Reply: { 1, state ('S' | 'F'), record } the run has finished (the record as its parent's step record);
--        { 0, workflow } registered: the outcome is delivered to the step field when the run finishes;
--        { -1 } no such run (never created, or deleted by retention).
local function wait_run(keys, argv)
  local root, id = keys[1], argv[1]
  local f = rcall('HMGET', run_key(root, id), 'st', 'wf', 'out', 'err')
  if not f[1] then return { -1 } end
  local state, json = child_outcome(id, f)
  if state then return { 1, state, json } end
  wait_for_existing_run(root, id, argv[2], argv[3], argv[4], now_ms())
  return { 0, f[2] }
end

-- wf1_forget_waiter: drops the registration of a wait that lost its race (a later outcome or event would
-- otherwise be delivered to a record nothing reads). Safe to repeat.
-- KEYS[1]  'ev': the event shard root; 'run': the raced run's shard root
-- ARGV[1]  'ev' | 'run'    ARGV[2] the waiter, '<waiting run id>|<step field>'
-- ARGV[3]  'ev': event name; 'run': raced run id    ARGV[4] 'ev': key ('' = none)
-- Reply: 1 when a registration was dropped, else 0.
local function forget_waiter(keys, argv)
  local root, what, waiter = keys[1], argv[1], argv[2]
  if what == 'ev' then return rcall('HDEL', event_base(root, argv[3], argv[4]) .. ':wt', waiter) end
  if what == 'run' then return rcall('HDEL', parents_key(root, argv[3]), waiter) end
  return redis.error_reply('ERR wf1_forget_waiter: unknown kind ' .. tostring(what) .. " (expected 'ev' or 'run')")
end

redis.register_function('wf1_wait_run', wait_run)
redis.register_function('wf1_forget_waiter', forget_waiter)
end
