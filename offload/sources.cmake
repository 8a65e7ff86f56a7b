# offload/: host memory the offloaded optimizer lives in. placement.c: hwloc topology, NUMA node
# and cores per local rank, node-bound buffers, thread binding (needs hwloc, linked at the top).
list(APPEND ZERO_SOURCES ${CMAKE_CURRENT_LIST_DIR}/placement.c)
# pipeline.c: the double-buffered schedule of the optimizer offload (callbacks do the copies).
list(APPEND ZERO_SOURCES ${CMAKE_CURRENT_LIST_DIR}/pipeline.c)
