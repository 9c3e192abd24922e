#!/usr/bin/env bash
# run-demo.sh MSAPROXY - what `make run` does: make a demo certificate and a
# demo user under conf/demo/ (once), start the demo backend on
# 127.0.0.1:2525, and run msaproxy on conf/msaproxy.yaml until Ctrl-C.
set -eu

bin=$(realpath "$1")
top=$(cd "$(dirname "$0")/.." && pwd)
demo=$top/conf/demo
password=demo-password

mkdir -p "$demo"
if [ ! -s "$demo/ecdsa.crt" ] || [ ! -s "$demo/ecdsa.key" ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-days 365 -subj "/CN=mail.example.test" \
		-addext "subjectAltName=DNS:mail.example.test,DNS:localhost,IP:127.0.0.1" \
		-keyout "$demo/ecdsa.key" -out "$demo/ecdsa.crt" 2>/dev/null
	chmod 600 "$demo/ecdsa.key"
	echo "run-demo: made $demo/ecdsa.crt"
fi
if [ ! -s "$demo/users" ]; then
	hash=$(printf '%s' "$password" | "$bin" hash-password)
	umask 077
	printf 'demo:%s\n' "$hash" >"$demo/users"
	echo "run-demo: made $demo/users (user demo, password $password)"
fi

"$bin" -t -c "$top/conf/msaproxy.yaml"

"$top/scripts/demo-backend" 127.0.0.1 2525 &
backend=$!
trap 'kill "$backend" 2>/dev/null || true; wait "$backend" 2>/dev/null || true' EXIT INT TERM
i=0
until (exec 3<>/dev/tcp/127.0.0.1/2525) 2>/dev/null; do
	i=$((i + 1))
	[ "$i" -lt 100 ] || { echo "run-demo: demo backend did not start" >&2; exit 1; }
	sleep 0.1
done

cat <<TXT

msaproxy demo: STARTTLS on 127.0.0.1:2587, implicit TLS on 127.0.0.1:2465.
Send a message from another terminal:

  swaks --server 127.0.0.1:2587 --tls --auth PLAIN \\
        --auth-user demo --auth-password $password \\
        --from demo@example.test --to someone@example.test

  (implicit TLS: --server 127.0.0.1:2465 --tlsc)

The demo backend prints what it receives here.  Ctrl-C stops both.

TXT
"$bin" -c "$top/conf/msaproxy.yaml"
