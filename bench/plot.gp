# Heartbeat lateness per contender, one line each: the lateness (gap minus
# interval, ms) that a given share of heartbeats stays under, against that
# share on a log scale of 1/(1 - share), so that the tail (p99, p99.9) is
# as wide as the median. Called by bench/run.mjs with:
#   gnuplot -e "out='x.png'; heading='...'; files='a.dat b.dat'; names='a b'" plot.gp
# Each data file holds "x lateness" lines, x = 1/(1 - share); lateness
# at or below 0.5 ms is drawn at 0.5 ms (log axis).

set terminal pngcairo size 960,600 font "DejaVu Sans,11"
set output out
set title heading
set logscale x
set logscale y
set xrange [1:*]
set yrange [0.5:*]
set xtics ("p0" 1, "p50" 2, "p90" 10, "p99" 100, "p99.9" 1000, "p99.99" 10000)
set xlabel "share of heartbeats"
set ylabel "lateness at the fake (ms, log; 0.5 = on time or early)"
set grid xtics ytics mytics
set key left top
plot for [i=1:words(files)] word(files, i) using 1:2 with steps linewidth 2 title word(names, i)
