# hwloc placement of the CPU offload (offload/placement.c): synthetic and XML topologies with
# exact node and core assignments, then allocation and thread binding on this machine.
add_executable(test_placement ${CMAKE_CURRENT_LIST_DIR}/test_placement.c)
target_link_libraries(test_placement PRIVATE zero_internal PkgConfig::HWLOC)
add_test(NAME placement COMMAND test_placement)
# HWLOC_COMPONENTS=-pci: this test needs no PCI devices of the real machine, and hwloc's PCI
# plugin (libpciaccess) leaks at start-up, which a ZERO_SANITIZE build would report.
set_tests_properties(placement PROPERTIES LABELS unit TIMEOUT 60
  ENVIRONMENT "OMP_NUM_THREADS=4;HWLOC_COMPONENTS=-pci")
