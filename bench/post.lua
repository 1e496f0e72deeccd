-- wrk script: POST the body given after `--`; a "{n}" in it becomes a number unique to this run, thread and
-- request (so that every created patient gets its own MRN). Usage: wrk ... -s bench/post.lua URL -- PREFIX BODY
local threads, counter, prefix, template = 0, 0, "", ""

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  prefix = args[1] .. "-" .. tid .. "-"
  template = args[2]
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local body = template:gsub("{n}", prefix .. counter)
  return wrk.format(nil, nil, nil, body)
end
