# kernels/: element-wise math (AdamW, casts, add, squared norm). Host twins in kernels.c, CUDA
# kernels in *.cu; both take their per-element math from zero_math.h.
list(APPEND ZERO_SOURCES ${CMAKE_CURRENT_LIST_DIR}/kernels.c)

# XXH3-64 (kernels/hash.h): xxHash's header compiled once per instruction set, the path chosen
# at run time. The AVX2 and AVX-512 copies are x86-64 only and called only on CPUs that have
# them, so their -m flags leave the rest of the binary portable.
list(APPEND ZERO_SOURCES ${CMAKE_CURRENT_LIST_DIR}/hash.c)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  list(APPEND ZERO_SOURCES ${CMAKE_CURRENT_LIST_DIR}/hash_avx2.c
                           ${CMAKE_CURRENT_LIST_DIR}/hash_avx512.c)
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/hash_avx2.c PROPERTIES
    COMPILE_OPTIONS "-mavx2")
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/hash_avx512.c PROPERTIES
    COMPILE_OPTIONS "-mavx512f")
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/hash.c PROPERTIES
    COMPILE_DEFINITIONS "ZERO_HASH_X86_PATHS=1")
endif()
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

# CPU Adam of ZeRO-Offload: AVX-512F / AVX2+F16C paths picked at run time through target
# attributes inside the file, so no -m flags here (the binary stays portable). Same flags as
# kernels.c. -ffp-contract=off is spelled out because GCC's default outside strict ISO mode
# (-std=gnu11) is =fast, under which it fuses the intrinsics' multiplies and adds into FMAs in
# the AVX-512 path (checked in the disassembly) and rounds differently from zk_adamw.
list(APPEND ZERO_SOURCES ${CMAKE_CURRENT_LIST_DIR}/adam_cpu.c)
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/adam_cpu.c PROPERTIES
  COMPILE_OPTIONS "-ffp-contract=off;-fno-math-errno;-fno-trapping-math")
