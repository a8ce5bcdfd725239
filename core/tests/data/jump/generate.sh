#!/bin/sh
# Regenerates vectors.txt from the paper's reference code (jump_reference.c).
# Needs a C compiler; the committed vectors.txt is what the tests read.
set -eu
cd "$(dirname "$0")"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
${CC:-gcc} -std=c99 -O2 -Wall -Wextra -o "$out" jump_reference.c
{
    echo "# key(hex) buckets bucket -- from jump_reference.c (Lamping and Veach's reference function)"
    "$out"
} > vectors.txt
wc -l vectors.txt
