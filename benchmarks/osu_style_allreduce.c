/* OSU-style MPI_Allreduce latency, the C reference for benchmarks/test_mpi_reference.py.
 *
 * Timed the way OSU's osu_allreduce times (osu_benchmarks/mpi/collective/osu_allreduce.c):
 * `warmup` untimed calls, then `iters` calls each between two MPI_Wtime() reads with an
 * MPI_Barrier after it (outside the timed region); the average per call on each rank, then the
 * average and maximum over ranks. float32 sum, in place (MPI_IN_PLACE) or out of place.
 *
 * usage: osu_style_allreduce IN_PLACE(0|1) ITERS WARMUP BYTES...
 * prints one line per size on rank 0: bytes avg_us max_us
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc < 5) {
        if (rank == 0) fprintf(stderr, "usage: %s IN_PLACE ITERS WARMUP BYTES...\n", argv[0]);
        MPI_Finalize();
        return 2;
    }
    int in_place = atoi(argv[1]), iters = atoi(argv[2]), warmup = atoi(argv[3]);
    for (int a = 4; a < argc; a++) {
        long bytes = atol(argv[a]);
        int count = (int)(bytes / (long)sizeof(float));
        float *send = malloc(bytes), *recv = malloc(bytes);
        for (int i = 0; i < count; i++) { send[i] = 0.0f; recv[i] = 0.0f; }
        double timer = 0.0;
        MPI_Barrier(MPI_COMM_WORLD);
        for (int i = 0; i < warmup + iters; i++) {
            double t0 = MPI_Wtime();
            MPI_Allreduce(in_place ? MPI_IN_PLACE : send, recv, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            double t1 = MPI_Wtime();
            if (i >= warmup) timer += t1 - t0;
            MPI_Barrier(MPI_COMM_WORLD);
        }
        double mine = timer * 1e6 / iters, total, worst;
        MPI_Reduce(&mine, &total, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
        MPI_Reduce(&mine, &worst, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
        if (rank == 0) printf("%ld %.4f %.4f\n", bytes, total / size, worst);
        free(send);
        free(recv);
    }
    MPI_Finalize();
    return 0;
}
