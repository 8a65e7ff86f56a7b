# ZeroBLAS.cmake — the BLAS of the examples (zero-gpt2's matrix products) and of zero-info's BLAS
# line, as the INTERFACE target zero_blas. libzero itself uses no BLAS.
#
# ZERO_BLAS=openblas (default): OpenBLAS and nothing else, found through pkg-config (`openblas`,
# as Debian's libopenblas-*-dev ship it) or else CMake's FindBLAS with BLA_VENDOR=OpenBLAS, and
# linked by its own name (libopenblas), never through the libblas.so.3 alternative, which may
# point at the netlib reference BLAS (~8x slower GEMMs). Configuring fails, saying what to do,
# when OpenBLAS is absent.
# ZERO_BLAS=any: any CBLAS (OpenBLAS when present, else whatever FindBLAS finds, the reference
# BLAS included); ZERO_BLAS=off: no BLAS, zero-gpt2 is not built.
# Sets ZERO_BLAS_FOUND, ZERO_BLAS_IS_OPENBLAS and ZERO_BLAS_DESC; zero_blas defines
# ZERO_BLAS_OPENBLAS=1 for OpenBLAS (its extensions: openblas_get_config, ...).
set(ZERO_BLAS "openblas" CACHE STRING "BLAS of the examples: openblas (required), any, off")
set_property(CACHE ZERO_BLAS PROPERTY STRINGS openblas any off)
if(NOT ZERO_BLAS MATCHES "^(openblas|any|off)$")
  message(FATAL_ERROR "ZERO_BLAS=${ZERO_BLAS}: expected openblas, any or off")
endif()

set(ZERO_BLAS_FOUND OFF)
set(ZERO_BLAS_IS_OPENBLAS OFF)
set(ZERO_BLAS_DESC "none")
add_library(zero_blas INTERFACE)

if(NOT ZERO_BLAS STREQUAL "off")
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(ZERO_OPENBLAS QUIET IMPORTED_TARGET openblas)
  endif()
  if(ZERO_OPENBLAS_FOUND)
    target_link_libraries(zero_blas INTERFACE PkgConfig::ZERO_OPENBLAS)
    set(ZERO_BLAS_IS_OPENBLAS ON)
    set(ZERO_BLAS_DESC "OpenBLAS ${ZERO_OPENBLAS_VERSION} (pkg-config: ${ZERO_OPENBLAS_LINK_LIBRARIES})")
  else()
    # No openblas.pc: FindBLAS restricted to OpenBLAS, plus its cblas.h.
    set(BLA_VENDOR OpenBLAS)
    find_package(BLAS QUIET)
    unset(BLA_VENDOR)
    find_path(ZERO_OPENBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas openblas-openmp openblas-pthread)
    if(BLAS_FOUND AND ZERO_OPENBLAS_INCLUDE_DIR)
      target_link_libraries(zero_blas INTERFACE ${BLAS_LIBRARIES})
      target_include_directories(zero_blas INTERFACE ${ZERO_OPENBLAS_INCLUDE_DIR})
      set(ZERO_BLAS_IS_OPENBLAS ON)
      set(ZERO_BLAS_DESC "OpenBLAS (FindBLAS: ${BLAS_LIBRARIES})")
    endif()
  endif()
  if(ZERO_BLAS_IS_OPENBLAS)
    target_compile_definitions(zero_blas INTERFACE ZERO_BLAS_OPENBLAS=1)
    set(ZERO_BLAS_FOUND ON)
  elseif(ZERO_BLAS STREQUAL "openblas")
    message(FATAL_ERROR
      "libzero: OpenBLAS not found. The examples need it for their matrix products; a reference "
      "BLAS (netlib libblas, which a cblas.h from libblas-dev belongs to) is ~8x slower.\n"
      "  Install it:  apt-get install libopenblas-openmp-dev   (scripts/setup.sh does this)\n"
      "  or point pkg-config at an OpenBLAS build (PKG_CONFIG_PATH with its openblas.pc),\n"
      "  or accept any CBLAS, the reference one included:  -DZERO_BLAS=any\n"
      "  or build without zero-gpt2:  -DZERO_BLAS=off")
  else()
    find_package(BLAS QUIET)
    find_path(ZERO_CBLAS_INCLUDE_DIR cblas.h)
    if(BLAS_FOUND AND ZERO_CBLAS_INCLUDE_DIR)
      target_link_libraries(zero_blas INTERFACE ${BLAS_LIBRARIES})
      target_include_directories(zero_blas INTERFACE ${ZERO_CBLAS_INCLUDE_DIR})
      set(ZERO_BLAS_FOUND ON)
      set(ZERO_BLAS_DESC "any CBLAS, not OpenBLAS (ZERO_BLAS=any: ${BLAS_LIBRARIES})")
    else()
      message(WARNING "libzero: ZERO_BLAS=any but no CBLAS found: zero-gpt2 is not built")
    endif()
  endif()
endif()
message(STATUS "libzero: BLAS ${ZERO_BLAS_DESC}")
