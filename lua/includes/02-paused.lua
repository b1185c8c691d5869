-- Paused workflows (client.pauseWorkflow): each shard keeps the names of the workflows that are paused
-- there in '<root>:paused' (a set; absent while none is). A claim takes no run of a paused workflow: its
-- ready runs stay queued (emits, children, cron ticks and wakes still put runs there), and the run a
-- completion would hand over to its worker is queued instead (takes_over sees the same plan).
-- The check costs a claim one EXISTS while nothing is paused in the shard; while something is, the
-- plan without the paused workflows is built once per set of paused names and kept with the plan.

local function paused_key(root) return root .. ':paused' end

-- `plan`: a claim plan (claim_plan in 03-claim.lua) with its workflow specs in plan.specs; `build`:
-- claim_plan itself. Returns the plan to claim with.
local function without_paused(root, plan, build)
  if rcall('EXISTS', paused_key(root)) == 0 then return plan end
  -- bounded by the workflows registered in the shard: operators pause a few by name
  local names = rcall('SMEMBERS', paused_key(root))
  table.sort(names)
  local signature = table.concat(names, '\n')
  local kept = plan.unpaused
  if kept and kept.signature == signature then return kept.plan end
  local paused = {}
  for i = 1, #names do paused[names[i]] = true end
  local specs = {}
  for _, spec in ipairs(plan.specs) do
    if not paused[spec[1]] then specs[#specs + 1] = spec end
  end
  local filtered = build(root, specs)
  plan.unpaused = { signature = signature, plan = filtered }
  return filtered
end
