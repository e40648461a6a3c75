/* OpenMP's idle threads and OpenBLAS's own thread pool take turns on the
 * same cores. With OpenMP's default wait policy, threads that finished a
 * parallel loop keep spinning while OpenBLAS's threads need those cores;
 * on small machines every phase that alternates loops and matrix products
 * then runs several times slower (measured: a retrieval test on 2 cores
 * 3.6x slower). The wait policy can only be set through the environment,
 * before the OpenMP runtime starts, so a program that wants the passive
 * policy restarts itself once with OMP_WAIT_POLICY=passive. A value the
 * user set is left alone. */
#ifndef ALBEF_CORE_THREADS_H
#define ALBEF_CORE_THREADS_H

/* Call first in main(). Returns only when OMP_WAIT_POLICY was already set
 * (or the restart failed: the program then goes on with the default). */
void threads_prefer_passive_wait(char **argv);

#endif
