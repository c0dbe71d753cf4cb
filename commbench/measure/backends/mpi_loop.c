/* commbench's C-level timing loop for the mpi backend (`commbench sweep --timing c-loop`).
 *
 * `iters` calls of one collective back to back between two MPI_Wtime() reads, after a barrier:
 * nccl-tests' back-to-back loop with no Python between the calls, so small messages read the
 * library's time instead of mpi4py's per-call cost. Returns seconds per call on this rank.
 * Handles come from mpi4py (MPI._handleof); the build links against the MPI mpi4py uses (the
 * venv's mpicc), so they are the same library's objects.
 */
#include <mpi.h>

enum { ALL_REDUCE = 0, ALL_GATHER = 1, REDUCE_SCATTER = 2 };

double commbench_loop(int kind, MPI_Comm comm, const void *send, void *recv, int count, MPI_Datatype dtype,
                      MPI_Op op, int iters) {
    MPI_Barrier(comm);
    double t0 = MPI_Wtime();
    for (int i = 0; i < iters; i++) {
        if (kind == ALL_REDUCE) {
            MPI_Allreduce(send, recv, count, dtype, op, comm);
        } else if (kind == ALL_GATHER) {
            MPI_Allgather(send, count, dtype, recv, count, dtype, comm);
        } else {
            MPI_Reduce_scatter_block(send, recv, count, dtype, op, comm);
        }
    }
    return (MPI_Wtime() - t0) / iters;
}

/* MPI_IN_PLACE is a macro (an address in Open MPI, a constant in MPICH): hand it to the caller. */
const void *commbench_in_place(void) { return MPI_IN_PLACE; }
