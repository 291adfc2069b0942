#!/usr/bin/env bash
# The library exports exactly the functions its public header declares.
set -euo pipefail
lib=$1 header=$2
exported=$(nm -D --defined-only "$lib" | awk '$2 == "T" { print $3 }' | sort)
declared=$(grep -oE '\bhl_[a-z_]+\(' "$header" | tr -d '(' | sort -u)
if [ "$exported" != "$declared" ]; then
	echo "symbols: exported and declared differ:"
	diff <(echo "$declared") <(echo "$exported") || true
	exit 1
fi
echo "symbols: $(echo "$exported" | wc -l) exported, all declared"
