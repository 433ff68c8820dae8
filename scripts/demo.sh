#!/bin/sh
# The main job on a built-in default: a small web server on the host's loopback, and a command
# in its own network namespace (served by fastnet) that fetches a page from it through the
# host alias name host.docker.internal — DNS, TCP and the host-loopback mapping at work.
set -eu
venv=${1:-.venv}
# A free port on the loopback (or FASTNET_DEMO_PORT).
port=${FASTNET_DEMO_PORT:-$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
dir=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
printf 'hello from the host, through fastnet\n' > "$dir/index.html"
"$venv/bin/python" -m http.server "$port" --bind 127.0.0.1 --directory "$dir" >/dev/null 2>&1 &
server=$!
for _ in $(seq 50); do
    "$venv/bin/python" -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
    sleep 0.1
done
echo "+ fastnet run -- curl -s http://host.docker.internal:$port/"
status=0
"$venv/bin/fastnet" run -- curl -s --max-time 10 "http://host.docker.internal:$port/" || status=$?
exit $status
