-- Argo CD health check for regsweep.dev/v1alpha1 RegistryCleanupPolicy: the body of
-- `resource.customizations.health.regsweep.dev_RegistryCleanupPolicy` in argocd-cm (the
-- example deploy/gitops/argocd-cm.yaml embeds this file verbatim; tests/health checks that
-- they agree and runs this script with a real Lua 5.1 on the statuses the operator writes).
--
-- It reads what the operator writes: status.phase, status.observedGeneration and the
-- conditions Ready, Progressing, Degraded, Reconciling and Stalled, which the operator writes
-- together in one of four shapes (each condition carrying observedGeneration). Order of the
-- decisions:
--   1. no status yet, or a generation the operator has not observed yet   -> Progressing
--   2. Stalled=True (invalid, blocked, held over a limit)                 -> Degraded
--   3. Reconciling=True or Progressing=True (a run in flight)            -> Progressing
--      (before Degraded: a run leaves Degraded as the last run left it)
--   4. Degraded=True (the last run failed)                                -> Degraded
--   5. phase Suspended (spec.suspend: true)                                -> Suspended
--   6. waiting for a person's approval of a plan (AwaitingApproval)       -> Suspended
--   7. Ready=True                                                          -> Healthy
--   8. anything else (Ready False/Unknown, no Ready condition)             -> Progressing
-- Lua 5.1 only (Argo CD runs gopher-lua): no goto, no integer division, only the base and
-- string functions.

local hs = {}

local function find(conditions, kind)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(conditions) do
    if type(c) == "table" and c.type == kind then
      return c
    end
  end
  return nil
end

local function isTrue(c)
  return c ~= nil and c.status == "True"
end

-- "<label>: <the condition's message>", or the label alone when the message is empty.
local function say(label, c)
  if c ~= nil and type(c.message) == "string" and c.message ~= "" then
    return label .. ": " .. c.message
  end
  return label
end

local status = obj.status
if type(status) ~= "table" or (status.phase == nil and status.conditions == nil) then
  hs.status = "Progressing"
  hs.message = "Waiting for the regsweep operator to report a status"
  return hs
end

local conditions = status.conditions
local phase = status.phase
if type(phase) ~= "string" or phase == "" then
  phase = "Unknown phase"
end

-- "Held (OverLimit)": the phase, and the condition's reason when it says more.
local function label(c)
  if c ~= nil and type(c.reason) == "string" and c.reason ~= "" and c.reason ~= phase then
    return phase .. " (" .. c.reason .. ")"
  end
  return phase
end

-- 1. A spec the operator has not seen yet: whatever the status says is about an older spec.
local generation = nil
if type(obj.metadata) == "table" then
  generation = obj.metadata.generation
end
if generation ~= nil then
  if status.observedGeneration ~= generation then
    hs.status = "Progressing"
    hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
      .. " (status is for generation " .. tostring(status.observedGeneration) .. ")"
    return hs
  end
  local kinds = { "Ready", "Progressing", "Degraded", "Reconciling", "Stalled" }
  for _, kind in ipairs(kinds) do
    local c = find(conditions, kind)
    if c ~= nil and c.observedGeneration ~= nil and c.observedGeneration ~= generation then
      hs.status = "Progressing"
      hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
        .. " (condition " .. kind .. " is for generation " .. tostring(c.observedGeneration) .. ")"
      return hs
    end
  end
end

local ready = find(conditions, "Ready")

-- 2. Cannot proceed without a change to the policy, a Secret or the registry Deployment.
local stalled = find(conditions, "Stalled")
if isTrue(stalled) then
  hs.status = "Degraded"
  hs.message = say(label(stalled), stalled)
  return hs
end

-- 3. A run in flight (Planning, Freezing, Sweeping, Thawing). The operator leaves Degraded
-- as the last run left it until this run ends, so a run after a failed one is Progressing.
local degraded = find(conditions, "Degraded")
local reconciling = find(conditions, "Reconciling")
local progressing = find(conditions, "Progressing")
if isTrue(reconciling) or isTrue(progressing) then
  local c = reconciling
  if not isTrue(c) then
    c = progressing
  end
  hs.status = "Progressing"
  if type(c.message) == "string" and c.message ~= "" then
    hs.message = say(label(c), c)
  else
    hs.message = label(c) .. ": a run is in progress"
  end
  if isTrue(degraded) then
    hs.message = say(hs.message .. "; the last run failed", degraded)
  end
  return hs
end

-- 4. The last run failed.
if isTrue(degraded) then
  hs.status = "Degraded"
  hs.message = say(label(degraded), degraded)
  return hs
end

-- 5. spec.suspend: true; no run is scheduled.
if phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = say("Suspended (spec.suspend is true)", ready)
  return hs
end

-- 6. A plan waits for a person's approval: healthy, but waiting for an external event, which
-- is what Argo CD's Suspended means (as for a paused Argo Rollout waiting for promotion). The
-- message carries the operator's approve command.
if phase == "AwaitingApproval" or (ready ~= nil and ready.reason == "AwaitingApproval") then
  hs.status = "Suspended"
  hs.message = say("AwaitingApproval", ready)
  return hs
end

-- 7. Nothing in flight, nothing wrong.
if isTrue(ready) then
  hs.status = "Healthy"
  hs.message = say(label(ready), ready)
  return hs
end

-- 8. A status the operator does not write today: not ready, nothing says why.
hs.status = "Progressing"
if ready ~= nil then
  hs.message = say(label(ready), ready)
else
  hs.message = phase .. ": no Ready condition yet"
end
return hs
