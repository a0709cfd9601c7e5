// Declarations only. libtorch ships ProcessGroupGloo.hpp but not the Gloo headers it includes.
// That header holds every Gloo object behind a pointer (shared_ptr / unique_ptr), so the class
// layout we compile against does not depend on Gloo's own definitions. The complete types it
// needs are Context (below) and the rendezvous Store interface that ProcessGroupGloo::GlooStore
// derives from, declared here with the methods GlooStore overrides. ardpipe never instantiates GlooStore or any Gloo
// type itself: the code that does is libtorch's, compiled against the real Gloo.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace gloo {
// Complete only because ProcessGroupGloo::setTimeout, an inline virtual, calls this in its
// body; that body is emitted with the class's vtable, which lives in libtorch, not here.
class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};
namespace transport {
class Device;
class UnboundBuffer;
} // namespace transport
namespace rendezvous {
class Store {
 public:
  virtual ~Store() = default;
  virtual void set(const std::string& key, const std::vector<char>& data) = 0;
  virtual std::vector<char> get(const std::string& key) = 0;
  virtual void wait(const std::vector<std::string>& keys) = 0;
  virtual void wait(
      const std::vector<std::string>& keys,
      const std::chrono::milliseconds& timeout) = 0;
};
} // namespace rendezvous
} // namespace gloo
