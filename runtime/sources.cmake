list(APPEND ZERO_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/config.c
  ${CMAKE_CURRENT_LIST_DIR}/log.c
  ${CMAKE_CURRENT_LIST_DIR}/device.c
  ${CMAKE_CURRENT_LIST_DIR}/comm_mpi.c
  ${CMAKE_CURRENT_LIST_DIR}/engine.c
  ${CMAKE_CURRENT_LIST_DIR}/stage3.c
  ${CMAKE_CURRENT_LIST_DIR}/dcoll.c
  ${CMAKE_CURRENT_LIST_DIR}/report.c)

# The cuda device backend and the nccl collective backend: CUDA builds only (top CMakeLists.txt
# decides ZERO_HAVE_CUDA and ZERO_HAVE_NCCL before this file is read).
if(ZERO_HAVE_CUDA)
  list(APPEND ZERO_SOURCES ${CMAKE_CURRENT_LIST_DIR}/device_cuda.c)
  if(ZERO_HAVE_NCCL)
    list(APPEND ZERO_SOURCES ${CMAKE_CURRENT_LIST_DIR}/comm_nccl.c)
  endif()
endif()
