# kernels/: element-wise math (AdamW, casts, add, squared norm). Host twins in kernels.c, CUDA
# kernels in *.cu; both take their per-element math from zero_math.h.
list(APPEND ZERO_SOURCES ${CMAKE_CURRENT_LIST_DIR}/kernels.c)
# No fma contraction, so the host twins round exactly like the CUDA kernels (zero_math.h). The
# other two change no result: no errno from sqrtf (it becomes a vector instruction) and no FP
# traps (GCC may then if-convert the float operations in the fp16 conversions, which it
# otherwise leaves as branches that stop the loops from vectorising).
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/kernels.c PROPERTIES
  COMPILE_OPTIONS "-ffp-contract=off;-fno-math-errno;-fno-trapping-math")

list(APPEND ZERO_CUDA_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/adamw.cu
  ${CMAKE_CURRENT_LIST_DIR}/cast.cu
  ${CMAKE_CURRENT_LIST_DIR}/sq_norm.cu)
