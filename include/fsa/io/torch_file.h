// Files that Python's torch.save wrote: a PyTorch user's weights.
//
//   torch.save(model.state_dict(), "x.pth")                  # an OrderedDict
//   torch.save({"state_dict": sd, "epoch": 90}, "x.pth")      # and other wrappers
//
//   auto weights = fsa::io::read_state_dict("x.pth");  // [(name, tensor), ...]
//
// Both of PyTorch's formats are read: the zip format (the default since
// PyTorch 1.6) and the legacy one (`_use_new_zipfile_serialization=False`).
// Only tensors and plain values are unpickled (dict, OrderedDict, list,
// tuple, int, float, str, bool, None, tensors and nn.Parameters). Nothing a
// pickle names is ever run or constructed: an instance of any other class
// (an argparse.Namespace of training arguments beside the weights) is read
// as the string "<module.Class object>", and a file that holds nothing but
// such an object (torch.save(model), a pickle calling os.system) is refused
// naming it.
#pragma once

#include <ATen/core/ivalue.h>

#include <string>
#include <utility>
#include <vector>

namespace fsa::io {

/// Names and tensors in the order of the file.
using StateDict = std::vector<std::pair<std::string, at::Tensor>>;

/// The object a torch.save file holds: dicts and OrderedDicts become
/// GenericDicts (insertion order kept), lists GenericLists, tuples Tuples;
/// tensors keep their dtype, shape, strides and shared storages, on the CPU.
/// Throws std::runtime_error naming `path` for a missing or unreadable file,
/// a file of another kind (a TorchScript archive: "load it with
/// torch::jit::load"), a truncated or damaged one, and one that holds only an
/// object of another class.
c10::IValue read_torch_file(const std::string& path);

/// The bytes torch.save(value) writes for `value` (PyTorch's zip format,
/// pickle protocol 2): a plain pickle of dicts (insertion order kept), lists,
/// str, int, bool, None and tensors (CPU, contiguous copies), and nothing
/// else, so that Python's `torch.load(f, weights_only=True)` (the default
/// since PyTorch 2.6) reads it; so does read_torch_file. Unlike LibTorch's
/// torch::pickle_save it names no TorchScript type tags. A double is written
/// as a 0-dim float64 tensor, since PyTorch 1.13's weights_only reader has
/// no float opcode (in Python, float(d["best_acc1"])); with_doubles reads it
/// back as a double. Throws std::invalid_argument for a value of another
/// kind (a tuple, an object).
std::vector<char> torch_save_bytes(const c10::IValue& value);

/// `value` with every 0-dim float64 tensor, in it or in its dicts and lists
/// (changed in place), turned into a double: a file that torch_save_bytes
/// wrote reads back as the value it was given (a value that held a 0-dim
/// float64 tensor comes back with a double there).
c10::IValue with_doubles(c10::IValue value);

/// The state_dict in a torch.save file: the top-level dict when its values
/// are all tensors, else the first of 'state_dict', 'model_state_dict',
/// 'model_state' (the FSA reference implementation) or 'model' (torchvision's
/// reference scripts) holding one, looked for up to four levels down. A
/// `module.` prefix on every name (DistributedDataParallel) is removed.
/// Throws std::runtime_error as read_torch_file, and naming the top-level
/// keys when no state_dict is found.
StateDict read_state_dict(const std::string& path);

}  // namespace fsa::io
