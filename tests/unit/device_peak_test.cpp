// The GPU peak table behind MFU: names as CUDA reports them, the more specific entry first.
#include "sdxl_dreambooth/util/device_peak.h"

#include <gtest/gtest.h>

using sdxl::util::device_peak_tflops;

TEST(DevicePeak, KnownGpusByTheirCudaNames) {
  EXPECT_DOUBLE_EQ(*device_peak_tflops("NVIDIA H100 80GB HBM3", true), 989.4);
  EXPECT_DOUBLE_EQ(*device_peak_tflops("NVIDIA H100 80GB HBM3", false), 66.9);
  EXPECT_DOUBLE_EQ(*device_peak_tflops("NVIDIA H100 PCIe", true), 756.0);
  EXPECT_DOUBLE_EQ(*device_peak_tflops("NVIDIA H200", true), 989.4);
  EXPECT_DOUBLE_EQ(*device_peak_tflops("NVIDIA GH200 480GB", true), 989.4);
  EXPECT_DOUBLE_EQ(*device_peak_tflops("NVIDIA A100-SXM4-80GB", true), 312.0);
  EXPECT_DOUBLE_EQ(*device_peak_tflops("NVIDIA A10G", true), 70.0);
  EXPECT_DOUBLE_EQ(*device_peak_tflops("NVIDIA L40S", true), 362.0);
  EXPECT_DOUBLE_EQ(*device_peak_tflops("NVIDIA L4", true), 121.0);
}

TEST(DevicePeak, UnknownDevicesHaveNoPeak) {
  EXPECT_FALSE(device_peak_tflops("", true));
  EXPECT_FALSE(device_peak_tflops("AMD Instinct MI300X", true));
}
