#!/bin/bash
# usage: cap.sh 'args' ...   each arg is one mtx argument string
D=${STLAB_CHANGER_DEV:?}
echo "=== DEV $D"
echo "=== LSSCSI"; lsscsi -g
echo "=== MTXVERSION"; mtx --version 2>&1 | head -3; dpkg-query -W mtx 2>/dev/null
for a0 in "$@"; do a=${a0//_/ }
  echo "=== CMD mtx -f $D $a"
  mtx -f $D $a >/tmp/o 2>/tmp/e; rc=$?
  echo "--- stdout"; cat /tmp/o
  echo "--- stderr"; cat /tmp/e
  echo "--- rc=$rc"
done
echo "=== END"
