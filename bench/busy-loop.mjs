// The benchmark's CPU load: spins one core until it is killed, as another
// busy process on the same machine would.
for (;;) {
  Math.sqrt(Math.random());
}
