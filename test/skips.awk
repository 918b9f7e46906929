# Prints each skipped test of a `go test -v` log with what it logged (its skip
# reason): make test runs it on bin/test.log, since go test -v reports a
# subtest's SKIP apart from its messages.
/^=== (RUN|CONT|NAME)/ { cur = $3; next }
/^ *--- SKIP: / { if (!($3 in skip)) order[n++] = $3; skip[$3] = 1; next }
/^ *--- / { next }
cur != "" && /^ +[^ ]+\.go:[0-9]+: / { msg[cur] = msg[cur] $0 "\n" }
END {
	if (n) print "== skipped tests and why:"
	for (i = 0; i < n; i++) printf "SKIP %s\n%s", order[i], msg[order[i]]
}
