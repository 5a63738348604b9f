-- wrk: PUT the manifest in $MANIFEST_FILE under a new tag on every request, so each request
-- is a real tag write, not a no-op.
local body
local thread_id = 0
local counter = 0
local next_id = 0
-- Several wrk processes (one per replica) keep their tags apart with $TAG_PREFIX.
local prefix = os.getenv("TAG_PREFIX") or ""

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
end

function init(args)
  local f = assert(io.open(os.getenv("MANIFEST_FILE"), "rb"))
  body = f:read("*a")
  f:close()
  thread_id = tid
end

function request()
  counter = counter + 1
  return wrk.format("PUT", "/v2/bench/put/manifests/t" .. prefix .. thread_id .. "-" .. counter,
    {["Content-Type"] = "application/vnd.oci.image.manifest.v1+json"}, body)
end
