# The engine's state machines without MPI (plain executable, no mpirun, no MPI_Init): a context
# built by hand on the host device whose collectives are an in-process fake of N mirror ranks
# with controllable completion: stage-2/3 reduce buckets, stage-3 trace and prefetch, the loss
# scaler, the offload pipeline's schedule.
add_executable(test_units ${CMAKE_CURRENT_LIST_DIR}/test_units.c)
target_link_libraries(test_units zero_internal)
add_test(NAME units COMMAND test_units)
set_tests_properties(units PROPERTIES LABELS unit TIMEOUT 60 ENVIRONMENT "OMP_NUM_THREADS=2")
