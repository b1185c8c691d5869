-- Run-time state of cron triggers (lib/scheduler): paused or not, the latest tick an instance saw, the
-- latest tick that started a run, and the next tick. The triggers themselves live in code; every app
-- instance fires each tick on its own clock and asks wf1_schedule_tick first, so a pause is seen by all.
-- KEYS[1]  the workflow's schedule hash '{<prefix>}:sched:<workflow>'. Its fields, per trigger id (an
--          argument, used as it is and never parsed): 'p:<id>' paused ('1'), 's:<id>' the latest tick
--          seen (ms), 'l:<id>' the latest tick or trigger that started a run (ms), 'n:<id>' the next tick (ms).
-- Times only move forward ('s' and 'l' keep the latest of what instances report), so that instances
-- whose clocks or calls interleave agree, and every call is safe to repeat.
-- In a block of its own: the library is one Lua chunk, whose main function may hold at most 200
-- locals; nothing of this file is used by another.
do

local function keep_latest(key, field, at)
  local stored = tonumber(rcall('HGET', key, field))
  if not stored or stored < tonumber(at) then rcall('HSET', key, field, at) end
end

-- wf1_schedule_tick: a tick of a trigger, or a run started by hand.
-- ARGV[1]  trigger id    ARGV[2] mode    ARGV[3] the tick's scheduled time (ms)    ARGV[4] the next tick (ms, '' = unknown)
--   'fire'  the tick is due: refused while paused (the run is not started), otherwise recorded as started
--   'skip'  the tick is due but the caller does not start it (the workflow is at its maxConcurrency)
--   'ran'   a run was started by hand at ARGV[3] (triggerSchedule): the last start only, paused or not
--   'next'  an instance mounted the trigger: the next tick only
-- Reply: { 1 when the caller may start the run ('fire' of a trigger not paused), 1 when paused (0 otherwise),
--          the latest tick seen before this call (ms, or '') }
local function schedule_tick(keys, argv)
  local key, id, mode, at, next_at = keys[1], argv[1], argv[2], argv[3], argv[4]
  if not tonumber(at) or (next_at ~= '' and not tonumber(next_at)) then
    return redis.error_reply('ERR wf1_schedule_tick: tick times must be whole ms, got ' .. tostring(at) .. ' and ' .. tostring(next_at))
  end
  local f = rcall('HMGET', key, 'p:' .. id, 's:' .. id)
  local paused = f[1] == '1'
  if mode == 'ran' then
    keep_latest(key, 'l:' .. id, at)
    return { 1, paused and 1 or 0, f[2] or '' }
  end
  if mode ~= 'fire' and mode ~= 'skip' and mode ~= 'next' then
    return redis.error_reply('ERR wf1_schedule_tick: unknown mode ' .. tostring(mode))
  end
  if next_at ~= '' then rcall('HSET', key, 'n:' .. id, next_at) end
  if mode == 'next' then return { 0, paused and 1 or 0, f[2] or '' } end
  keep_latest(key, 's:' .. id, at)
  if mode == 'fire' and not paused then
    keep_latest(key, 'l:' .. id, at)
    return { 1, 0, f[2] or '' }
  end
  return { 0, paused and 1 or 0, f[2] or '' }
end

-- wf1_schedule_pause: pauses (ARGV[2] = '1') or resumes ('0') a trigger: no instance starts its ticks
-- while it is paused.
-- ARGV[1]  trigger id    ARGV[2] '1' pause, '0' resume
-- Reply: 1 when the state changed, 0 when it already was so.
local function schedule_pause(keys, argv)
  local field = 'p:' .. argv[1]
  if argv[2] == '1' then return rcall('HSET', keys[1], field, '1') end
  if argv[2] == '0' then return rcall('HDEL', keys[1], field) end
  return redis.error_reply('ERR wf1_schedule_pause: ARGV[2] must be 1 (pause) or 0 (resume)')
end

redis.register_function('wf1_schedule_tick', schedule_tick)
redis.register_function('wf1_schedule_pause', schedule_pause)
end
