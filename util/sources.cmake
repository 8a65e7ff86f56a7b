# util/: what every layer above uses and nothing below it: the error object (error.c), logging
# (log.c), monotonic time (clock.h) and fingerprint hashing (hash.h). Includes only zero.h.
list(APPEND ZERO_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/error.c
  ${CMAKE_CURRENT_LIST_DIR}/log.c)
