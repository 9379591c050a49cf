-- Argo CD health check of the eventpipeline.dev kinds (EventPipeline, Broker, ClusterBroker,
-- AirflowInstance, ClusterAirflowInstance). Argo CD runs it with the live object as `obj`;
-- install it through argocd-cm (see argocd-cm.yaml beside this file, kept identical by a test).
--
--   Suspended    spec.suspend is true
--   Progressing  the operator has not yet seen this generation, or Ready is Unknown / missing
--   Healthy      Ready=True for the current generation
--   Degraded     Ready=False: the reason and message say what to fix
local hs = {}

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: the operator changes nothing and no message triggers a DAG run"
  return hs
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile"
  return hs
end

local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile generation " .. tostring(generation)
  return hs
end

local ready = nil
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" then
      ready = condition
    end
  end
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile generation " .. tostring(generation)
  return hs
end

local detail = tostring(ready.reason or "")
if ready.message ~= nil and ready.message ~= "" then
  detail = detail .. ": " .. ready.message
end

if ready.status == "True" then
  hs.status = "Healthy"
elseif ready.status == "False" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = detail
return hs
