#!/bin/sh
# GET / -> "pod=<POD_NAME> version=<VERSION> ..." ; answers 500 to FAIL_PERCENT % of
# requests (the "bounced-service" scenario). Query ?fail=N overrides the rate.
rate="${FAIL_PERCENT:-0}"
client="${REMOTE_ADDR#[}"; client="${client%]}"; client="${client#::ffff:}"
case "$QUERY_STRING" in *fail=*) rate="${QUERY_STRING##*fail=}"; rate="${rate%%&*}" ;; esac
if [ "$((RANDOM % 100))" -lt "${rate:-0}" ]; then
	printf 'Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\n'
	echo "pod=$POD_NAME version=$VERSION status=500 path=$REQUEST_URI client=$client"
	exit 0
fi
printf 'Content-Type: text/plain\r\n\r\n'
echo "pod=$POD_NAME version=$VERSION status=200 path=$REQUEST_URI client=$client"
