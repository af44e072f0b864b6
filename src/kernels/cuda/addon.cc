// N-API glue of the tfjs-moe CUDA addon (plain node_api.h: no build-time download, no node-addon-api needed).
// Every entry point is synchronous, validates what it is given before any GPU work, and turns every failure
// (bad argument, CUDA error) into a JS Error; nothing here may abort the process. The entry points live in
// addon_ops.cc (one per op) and addon_layer.cc (the layer handle); addon_napi.h holds the shared marshalling.
#include "addon_napi.h"

NAPI_MODULE_INIT() {
  try {
    moe_napi::defineOps(env, exports);
    moe_napi::defineLayer(env, exports);
  } catch (const std::exception&) {
    return nullptr;
  }
  return exports;
}
