# runtime/: the engine's units (engine.h lists them and their jobs), the configuration table, the
# device backends (device.c: host and NUMA-bound host memory), the process group and mpi
# collective backend (comm_mpi.c), and backend construction (backend.c: the only file that names
# a backend).
list(APPEND ZERO_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/config.c
  ${CMAKE_CURRENT_LIST_DIR}/device.c
  ${CMAKE_CURRENT_LIST_DIR}/comm_mpi.c
  ${CMAKE_CURRENT_LIST_DIR}/coll.c
  ${CMAKE_CURRENT_LIST_DIR}/backend.c
  ${CMAKE_CURRENT_LIST_DIR}/api.c
  ${CMAKE_CURRENT_LIST_DIR}/agree.c
  ${CMAKE_CURRENT_LIST_DIR}/state.c
  ${CMAKE_CURRENT_LIST_DIR}/grad.c
  ${CMAKE_CURRENT_LIST_DIR}/stage3.c
  ${CMAKE_CURRENT_LIST_DIR}/views.c
  ${CMAKE_CURRENT_LIST_DIR}/step.c
  ${CMAKE_CURRENT_LIST_DIR}/optim.c
  ${CMAKE_CURRENT_LIST_DIR}/io.c
  ${CMAKE_CURRENT_LIST_DIR}/ckpt_format.c
  ${CMAKE_CURRENT_LIST_DIR}/ckpt.c
  ${CMAKE_CURRENT_LIST_DIR}/tokfile.c
  ${CMAKE_CURRENT_LIST_DIR}/data.c
  ${CMAKE_CURRENT_LIST_DIR}/report.c)

# The cuda device backend and the nccl collective backend: CUDA builds only (top CMakeLists.txt
# decides ZERO_HAVE_CUDA and ZERO_HAVE_NCCL before this file is read).
if(ZERO_HAVE_CUDA)
  list(APPEND ZERO_SOURCES ${CMAKE_CURRENT_LIST_DIR}/device_cuda.c)
  if(ZERO_HAVE_NCCL)
    list(APPEND ZERO_SOURCES ${CMAKE_CURRENT_LIST_DIR}/comm_nccl.c)
  endif()
endif()
