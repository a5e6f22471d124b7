// A shared object that is loaded already, opened again by the address of one of its symbols so
// that its symbols and its dependencies' can be looked up without reaching the rest of the
// process: Debian's OpenBLAS libblas.so.3 is a thin wrapper over libopenblas.so.0, and a lookup
// in the process's global scope would find OpenBLAS's symbols even when they came with its
// liblapack.so.3 beside another libblas.so.3.
#pragma once

#include <string>

namespace sdxl::util {

class SharedObject {
 public:
  // The object that holds `address`; an empty handle when there is none or it is not loaded.
  explicit SharedObject(void* address);
  ~SharedObject();
  SharedObject(const SharedObject&) = delete;
  SharedObject& operator=(const SharedObject&) = delete;

  void* symbol(const char* name) const;
  template <typename F>
  F function(const char* name) const {
    return reinterpret_cast<F>(symbol(name));
  }

 private:
  void* handle_ = nullptr;
};

// The shared object that provides `address`, symlinks resolved (libblas.so.3 is a chain of
// alternatives links whose target names the implementation); "" when none does.
std::string shared_object_path(void* address);

// The address of sgemm_, the symbol LibTorch's CPU matrix products call; nullptr when no BLAS
// is loaded.
void* blas_gemm_symbol();

}  // namespace sdxl::util
