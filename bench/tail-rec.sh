#!/bin/bash
# Records bench_tail.py --tails (TAILS_ONLY=burst) under perf for bench/tail_attr.py:
# bench/tail-rec.sh BUILD /abs/OUTDIR   (perf record -a: run as root)
B=$1; O=$2; mkdir -p $O
cd "$(dirname "$0")/.."
TAILS_REQS=$O/reqs TAILS_MARK=1 TAILS_ONLY=${TAILS_ONLY:-burst} TRACE_WAIT=1.5 /usr/bin/python3 bench/bench_tail.py $B --secs ${SECS:-3} --tails > $O/bench.txt 2>&1 &
BP=$!
sleep 2.5
PID=$(grep -o "pid [0-9]*" $O/bench.txt | awk '{print $2}')
echo daemon $PID > $O/pid
python3 -c "
import os,sys
kids={}
for p in os.listdir(\"/proc\"):
  if p.isdigit():
    try: s=open(f\"/proc/{p}/stat\").read(); kids.setdefault(int(s.rsplit(\")\",1)[1].split()[1]),[]).append(int(p))
    except OSError: pass
out=[];todo=[int(sys.argv[1])]
while todo:
  x=todo.pop(); out.append(x); todo+=kids.get(x,[])
for x in list(out):
  try: out+= [int(t) for t in os.listdir(f\"/proc/{x}/task\")]
  except OSError: pass
print(\" \".join(map(str,set(out))))
" $PID > $O/tree
perf record -m 16M -a -g -k mono -e sched:sched_switch -e sched:sched_wakeup/call-graph=no/ -e sched:sched_process_fork/call-graph=no/ -e syscalls:sys_enter_fdatasync -e syscalls:sys_exit_fdatasync -e syscalls:sys_enter_fsync -e syscalls:sys_exit_fsync -e jbd2:jbd2_start_commit -e jbd2:jbd2_end_commit -o $O/perf.data 2>$O/perf.err &
PP=$!
# Every vCPU's 1 ms tick: a gap on both is the host pausing the VM (tail_attr.py)
perf record -q -a -e cpu-clock -c 1000000 -k mono -o $O/tick.data 2>$O/tick.err &
TP=$!
wait $BP
kill -INT $PP $TP; wait $PP $TP
