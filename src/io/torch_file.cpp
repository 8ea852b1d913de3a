// Reading files that Python's torch.save wrote (see torch_file.h).
//
// LibTorch 1.13's own unpickler cannot: it turns every collections.OrderedDict
// (what state_dict() returns) into None and then fails an internal assert, it
// has no SETITEM opcode (a dict of one entry), and it knows no
// nn.Parameter. So this file holds a small, closed pickle interpreter on top
// of caffe2::serialize::PyTorchStreamReader (the zip container torch.save
// writes), accepting only what torch.save emits for tensors and plain
// values; every other global is refused by name. The legacy (pre-1.6)
// format is read as well: five pickles and the raw storages after them.
#include "fsa/io/torch_file.h"

#include <ATen/core/ivalue.h>
#include <ATen/ops/empty.h>
#include <c10/core/ScalarType.h>
#include <c10/core/Storage.h>
#include <caffe2/serialize/inline_container.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <unordered_map>

#include "fsa/io/files.h"

namespace fsa::io {

namespace {

using c10::IValue;

[[noreturn]] void fail(const std::string& msg) { throw std::runtime_error(msg); }

/// The sizes of records and storages may not exceed what a file can hold.
constexpr int64_t kMaxStorageBytes = int64_t(1) << 40;

// GLOBAL opcodes are kept on the unpickler stack as strings with this prefix.
const std::string kGlobalTag = "\x01GLOBAL\x01";
// An instance of a class other than those the reader knows (an argparse
// Namespace of training arguments beside the weights, a whole nn.Module) is
// never constructed: it is read as the string "<module.Class object>", as
// Python's repr names it.
std::string object_placeholder(const std::string& global) {  // "module Class"
  std::string name = global;
  std::replace(name.begin(), name.end(), ' ', '.');
  return "<" + name + " object>";
}
bool is_object(const IValue& v) {
  if (!v.isString()) return false;
  const auto& s = v.toStringRef();
  return s.size() > 9 && s.front() == '<' && s.compare(s.size() - 8, 8, " object>") == 0;
}
bool is_global(const IValue& v) {
  return v.isString() && v.toStringRef().compare(0, kGlobalTag.size(), kGlobalTag) == 0;
}
std::string global_name(const IValue& v) { return v.toStringRef().substr(kGlobalTag.size()); }

c10::ScalarType dtype_from_storage_type(const IValue& v) {
  if (!is_global(v)) fail("persistent id: storage type is not a global");
  std::string name = global_name(v);  // e.g. "torch FloatStorage"
  if (name.rfind("torch ", 0) != 0) fail("unknown storage type '" + name + "'");
  name = name.substr(6);
  for (int i = 0; i < static_cast<int>(c10::ScalarType::NumOptions); ++i) {
    auto st = static_cast<c10::ScalarType>(i);
    if (name == std::string(c10::toString(st)) + "Storage") return st;
  }
  fail("unknown storage type 'torch." + name + "'");
}

std::vector<int64_t> int_tuple(const IValue& v) {
  std::vector<int64_t> out;
  for (const auto& e : v.toTupleRef().elements()) out.push_back(e.toInt());
  return out;
}

// A closed subset of the pickle VM (protocols 2-4), enough for torch.save output.
class MiniUnpickler {
 public:
  // Returns a 1-D tensor that owns the whole storage `key`.
  using StorageLoader =
      std::function<at::Tensor(const std::string& key, c10::ScalarType, int64_t numel)>;

  MiniUnpickler(const char* data, size_t size, size_t pos, StorageLoader loader)
      : d_(data), n_(size), p_(pos), loader_(std::move(loader)) {}

  size_t pos() const { return p_; }

  IValue parse() {
    for (;;) {
      uint8_t op = rd<uint8_t>();
      switch (op) {
        case 0x80:  // PROTO
          rd<uint8_t>();
          break;
        case 0x95:  // FRAME
          rd<uint64_t>();
          break;
        case '.': {  // STOP
          if (stack_.size() != 1) fail("pickle: bad stack at STOP");
          return stack_.back();
        }
        case '(':  // MARK
          marks_.push_back(stack_.size());
          break;
        case '}':  // EMPTY_DICT
          stack_.emplace_back(new_dict());
          break;
        case ']':  // EMPTY_LIST
          stack_.emplace_back(c10::impl::GenericList(c10::AnyType::get()));
          break;
        case ')':  // EMPTY_TUPLE
          stack_.emplace_back(c10::ivalue::Tuple::create(std::vector<IValue>{}));
          break;
        case 'd': {  // DICT
          auto dict = new_dict();
          insert_pairs(dict, pop_mark(), "DICT");
          stack_.emplace_back(dict);
        } break;
        case 'l': {  // LIST
          auto items = pop_mark();
          c10::impl::GenericList l(c10::AnyType::get());
          for (auto& x : items) l.push_back(x);
          stack_.emplace_back(l);
        } break;
        case 't':  // TUPLE
          stack_.emplace_back(c10::ivalue::Tuple::create(pop_mark()));
          break;
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          size_t k = op - 0x84;
          if (stack_.size() < k) fail("pickle: stack underflow");
          std::vector<IValue> items(stack_.end() - k, stack_.end());
          stack_.resize(stack_.size() - k);
          stack_.emplace_back(c10::ivalue::Tuple::create(std::move(items)));
        } break;
        case 's': {  // SETITEM
          IValue v = pop(), k = pop();
          top_dict().insert_or_assign(k, v);
        } break;
        case 'u': {  // SETITEMS
          auto items = pop_mark();
          insert_pairs(top_dict(), items, "SETITEMS");
        } break;
        case 'a': {  // APPEND
          IValue v = pop();
          top_list().push_back(v);
        } break;
        case 'e': {  // APPENDS
          auto items = pop_mark();
          auto l = top_list();
          for (auto& x : items) l.push_back(x);
        } break;
        case 'q':  // BINPUT
          memo_[rd<uint8_t>()] = top();
          break;
        case 'r':  // LONG_BINPUT
          memo_[rd<uint32_t>()] = top();
          break;
        case 0x94:  // MEMOIZE
          memo_[static_cast<uint32_t>(memo_.size())] = top();
          break;
        case 'h':  // BINGET
          stack_.push_back(memo_get(rd<uint8_t>()));
          break;
        case 'j':  // LONG_BINGET
          stack_.push_back(memo_get(rd<uint32_t>()));
          break;
        case 'K':  // BININT1
          stack_.emplace_back(static_cast<int64_t>(rd<uint8_t>()));
          break;
        case 'M':  // BININT2
          stack_.emplace_back(static_cast<int64_t>(rd<uint16_t>()));
          break;
        case 'J':  // BININT
          stack_.emplace_back(static_cast<int64_t>(rd<int32_t>()));
          break;
        case 0x8a: {  // LONG1
          uint8_t k = rd<uint8_t>();
          if (k > 8) fail("pickle: integer wider than 64 bits");
          need(k);
          uint64_t u = 0;
          for (int i = 0; i < k; ++i) u |= uint64_t(uint8_t(d_[p_ + i])) << (8 * i);
          if (k > 0 && k < 8 && (uint8_t(d_[p_ + k - 1]) & 0x80)) u |= ~uint64_t(0) << (8 * k);
          p_ += k;
          stack_.emplace_back(static_cast<int64_t>(u));
        } break;
        case 'G': {  // BINFLOAT (big-endian)
          need(8);
          uint64_t u = 0;
          for (int i = 0; i < 8; ++i) u = (u << 8) | uint8_t(d_[p_ + i]);
          p_ += 8;
          double x;
          std::memcpy(&x, &u, 8);
          stack_.emplace_back(x);
        } break;
        case 'X':  // BINUNICODE
        case 'T':  // BINSTRING
        case 'B':  // BINBYTES
          stack_.emplace_back(bytes(rd<uint32_t>()));
          break;
        case 0x8c:  // SHORT_BINUNICODE
        case 'U':   // SHORT_BINSTRING
        case 'C':   // SHORT_BINBYTES
          stack_.emplace_back(bytes(rd<uint8_t>()));
          break;
        case 0x8d:  // BINUNICODE8
          stack_.emplace_back(bytes(rd<uint64_t>()));
          break;
        case 'N':  // NONE
          stack_.emplace_back();
          break;
        case 0x88:  // NEWTRUE
          stack_.emplace_back(true);
          break;
        case 0x89:  // NEWFALSE
          stack_.emplace_back(false);
          break;
        case 'c': {  // GLOBAL
          std::string mod = line(), name = line();
          stack_.emplace_back(kGlobalTag + mod + " " + name);
        } break;
        case 0x93: {  // STACK_GLOBAL
          IValue name = pop(), mod = pop();
          if (!name.isString() || !mod.isString()) fail("pickle: STACK_GLOBAL of a non-string");
          if (is_global(name) || is_global(mod)) fail("pickle: STACK_GLOBAL of a global");
          stack_.emplace_back(kGlobalTag + mod.toStringRef() + " " + name.toStringRef());
        } break;
        case 'R': {  // REDUCE
          IValue args = pop();
          IValue fn = pop();
          stack_.push_back(call(fn, args));
        } break;
        case 0x81: {  // NEWOBJ
          IValue args = pop();
          IValue cls = pop();
          stack_.push_back(call(cls, args));
        } break;
        case 'b': {  // BUILD
          IValue state = pop();
          const IValue& obj = top();
          // OrderedDict.__dict__ (e.g. state_dict()._metadata) and tensor state: ignored.
          if (!obj.isGenericDict() && !obj.isTensor() && !is_object(obj))
            fail("pickle: BUILD on unsupported object " + obj.tagKind());
        } break;
        case 'Q': {  // BINPERSID
          IValue pid = pop();
          if (!pid.isTuple()) fail("pickle: a persistent id that is not a tuple");
          const auto& e = pid.toTupleRef().elements();
          if (e.size() < 5 || !e.at(0).isString() || e.at(0).toStringRef() != "storage")
            fail("pickle: unsupported persistent id");
          if (e.size() > 5 && !e.at(5).isNone())
            fail("pickle: storage views (pre-0.4 files) are not supported");
          if (!e.at(2).isString() || !e.at(4).isInt()) fail("pickle: malformed storage id");
          stack_.emplace_back(
              loader_(e.at(2).toStringRef(), dtype_from_storage_type(e.at(1)), e.at(4).toInt()));
        } break;
        default: {
          char buf[64];
          snprintf(buf, sizeof buf, "pickle: unsupported opcode 0x%02x at offset %zu", op, p_ - 1);
          fail(buf);
        }
      }
    }
  }

 private:
  static c10::impl::GenericDict new_dict() {
    return c10::impl::GenericDict(c10::AnyType::get(), c10::AnyType::get());
  }

  IValue call(const IValue& fn, const IValue& args) {
    if (!is_global(fn)) fail("pickle: REDUCE on a non-global");
    const std::string g = global_name(fn);
    if (!args.isTuple()) fail("pickle: REDUCE with arguments that are not a tuple");
    const auto& a = args.toTupleRef().elements();
    if (g == "collections OrderedDict") {
      auto dict = new_dict();
      if (!a.empty())  // OrderedDict([(k, v), ...])
        for (const auto& kv : a[0].toListRef()) {
          const auto& p = kv.toTupleRef().elements();
          dict.insert_or_assign(p.at(0), p.at(1));
        }
      return dict;
    }
    if (g == "torch._utils _rebuild_tensor_v2" || g == "torch._utils _rebuild_tensor") {
      // (storage, storage_offset, size, stride[, requires_grad, backward_hooks[, metadata]])
      const at::Tensor& st = a.at(0).toTensor();
      const auto offset = a.at(1).toInt();
      const auto sizes = int_tuple(a.at(2)), strides = int_tuple(a.at(3));
      const auto negative = [](int64_t x) { return x < 0; };
      if (offset < 0 || sizes.size() != strides.size() ||
          std::any_of(sizes.begin(), sizes.end(), negative) ||
          std::any_of(strides.begin(), strides.end(), negative)) {
        fail("pickle: a tensor of negative or mismatched sizes, strides or offset");
      }
      // set_ checks that the view stays inside the storage.
      return at::empty({0}, st.options()).set_(st.storage(), offset, sizes, strides);
    }
    if (g == "torch.jit._pickle restore_type_tag" ||  // files from torch::pickle_save
        g == "torch.jit._pickle build_intlist" || g == "torch.jit._pickle build_doublelist" ||
        g == "torch.jit._pickle build_boollist" || g == "torch.jit._pickle build_tensorlist") {
      return a.at(0);  // (container[, type string]) -> container
    }
    if (g == "torch._utils _rebuild_parameter" ||
        g == "torch._utils _rebuild_parameter_with_state") {
      return a.at(0);  // (data, requires_grad, backward_hooks[, state])
    }
    // Any other class or function is not run (a pickle may name os.system).
    return IValue(object_placeholder(g));
  }

  template <class T>
  T rd() {  // little-endian host assumed (x86/arm64)
    need(sizeof(T));
    T v;
    std::memcpy(&v, d_ + p_, sizeof(T));
    p_ += sizeof(T);
    return v;
  }
  void need(uint64_t k) const {
    if (k > n_ - p_) fail("pickle: truncated data");
  }
  std::string bytes(uint64_t k) {
    need(k);
    std::string s(d_ + p_, k);
    p_ += k;
    if (s.rfind(kGlobalTag, 0) == 0) {
      fail("pickle: a string posing as a global");
    }
    return s;
  }
  std::string line() {
    const void* nl = std::memchr(d_ + p_, '\n', n_ - p_);
    if (!nl) fail("pickle: truncated GLOBAL");
    size_t k = static_cast<const char*>(nl) - (d_ + p_);
    std::string s(d_ + p_, k);
    p_ += k + 1;
    return s;
  }
  IValue pop() {
    if (stack_.empty()) fail("pickle: stack underflow");
    IValue v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  const IValue& top() const {
    if (stack_.empty()) fail("pickle: stack underflow");
    return stack_.back();
  }
  /// key, value, key, value, ... from a MARK into `dict`.
  static void insert_pairs(c10::impl::GenericDict dict, const std::vector<IValue>& items,
                           const char* opcode) {
    if (items.size() % 2 != 0) fail(fmt::format("pickle: {} of an odd number of items", opcode));
    for (size_t i = 0; i + 1 < items.size(); i += 2) dict.insert_or_assign(items[i], items[i + 1]);
  }
  c10::impl::GenericDict top_dict() {
    if (!top().isGenericDict()) fail("pickle: SETITEM(S) on a non-dict");
    return top().toGenericDict();
  }
  c10::impl::GenericList top_list() {
    if (!top().isList()) fail("pickle: APPEND(S) on a non-list");
    return top().toList();
  }
  std::vector<IValue> pop_mark() {
    if (marks_.empty()) fail("pickle: no MARK");
    size_t m = marks_.back();
    marks_.pop_back();
    if (m > stack_.size()) fail("pickle: MARK above the stack");
    std::vector<IValue> items(stack_.begin() + m, stack_.end());
    stack_.resize(m);
    return items;
  }
  const IValue& memo_get(uint32_t i) const {
    auto it = memo_.find(i);
    if (it == memo_.end()) fail("pickle: bad memo reference");
    return it->second;
  }

  const char* d_;
  size_t n_, p_;
  StorageLoader loader_;
  std::vector<IValue> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint32_t, IValue> memo_;
};

// Legacy torch.save: pickle(magic) pickle(1001) pickle(sys_info) pickle(obj)
// pickle(sorted storage keys) then per key: int64 numel + raw little-endian data.
IValue read_legacy(const std::vector<char>& buf, const std::string& path) {
  std::unordered_map<std::string, at::Tensor> storages;
  auto loader = [&](const std::string& key, c10::ScalarType dt, int64_t numel) {
    auto it = storages.find(key);
    if (it != storages.end()) return it->second;
    if (numel < 0 || numel > kMaxStorageBytes ||
        uint64_t(numel) * c10::elementSize(dt) > buf.size()) {
      fail(path + ": a storage is larger than the file");
    }
    at::Tensor t = at::empty({numel}, at::TensorOptions().dtype(dt));
    storages.emplace(key, t);
    return t;
  };
  auto no_storage = [&](const std::string&, c10::ScalarType, int64_t) -> at::Tensor {
    fail(path + ": unexpected storage in legacy header");
  };
  size_t pos = 15;               // magic-number pickle, checked by caller
  for (int i = 0; i < 2; ++i) {  // protocol version, sys_info
    MiniUnpickler u(buf.data(), buf.size(), pos, no_storage);
    IValue v = u.parse();
    if (i == 0 && (!v.isInt() || v.toInt() != 1001)) fail(path + ": bad legacy protocol version");
    if (i == 1 && v.isGenericDict()) {
      auto d = v.toGenericDict();
      if (d.contains("little_endian") && !d.at("little_endian").toBool())
        fail(path + ": big-endian legacy files are not supported");
    }
    pos = u.pos();
  }
  MiniUnpickler main(buf.data(), buf.size(), pos, loader);
  IValue result = main.parse();
  MiniUnpickler keys_u(buf.data(), buf.size(), main.pos(), no_storage);
  IValue keys = keys_u.parse();
  pos = keys_u.pos();
  for (const auto& k : keys.toListRef()) {
    auto it = storages.find(k.toStringRef());
    if (it == storages.end()) fail(path + ": storage key not referenced: " + k.toStringRef());
    int64_t numel;
    if (8 > buf.size() - pos) fail(path + ": truncated legacy file");
    std::memcpy(&numel, buf.data() + pos, 8);
    pos += 8;
    at::Tensor& t = it->second;
    if (numel != t.numel()) fail(path + ": storage size mismatch for key " + k.toStringRef());
    size_t nbytes = numel * t.element_size();
    if (nbytes > buf.size() - pos) fail(path + ": truncated legacy file");
    std::memcpy(t.data_ptr(), buf.data() + pos, nbytes);
    pos += nbytes;
  }
  return result;
}

IValue read_zip(const std::string& path) {
  caffe2::serialize::PyTorchStreamReader reader(path);  // archive name = first dir in zip
  if (reader.hasRecord("constants.pkl"))
    fail(path + ": is a TorchScript archive (torch.jit.save); load it with torch::jit::load");
  if (!reader.hasRecord("data.pkl"))
    fail(path + ": zip archive without data.pkl; not written by torch.save");
  at::DataPtr pkl;
  size_t pkl_size;
  std::tie(pkl, pkl_size) = reader.getRecord("data.pkl");
  std::unordered_map<std::string, at::Tensor> storages;  // shared storages stay shared
  auto loader = [&](const std::string& key, c10::ScalarType dt, int64_t numel) {
    auto it = storages.find(key);
    if (it != storages.end()) return it->second;
    if (numel < 0 || numel > kMaxStorageBytes) fail(path + ": impossible storage size");
    size_t nbytes = numel * c10::elementSize(dt);
    at::DataPtr data;
    if (numel > 0) {
      size_t got;
      std::tie(data, got) = reader.getRecord("data/" + key);
      if (got != nbytes) fail(path + ": record data/" + key + " has wrong size");
    }
    c10::Storage storage(c10::Storage::use_byte_size_t(), nbytes, std::move(data),
                         /*allocator=*/nullptr, /*resizable=*/false);
    at::Tensor t = at::empty({0}, at::TensorOptions().dtype(dt)).set_(storage);
    storages.emplace(key, t);
    return t;
  };
  MiniUnpickler u(static_cast<const char*>(pkl.get()), pkl_size, 0, loader);
  return u.parse();
}

/// Pickle protocol 2 as torch.save writes it, for plain values and tensors.
class MiniPickler {
 public:
  /// The pickle of `value`; the tensors' bytes are left in storages().
  std::string dump(const IValue& value) {
    out_ = "\x80\x02";  // PROTO 2
    put(value);
    out_ += '.';  // STOP
    return std::move(out_);
  }
  /// (record key, contiguous CPU tensor) per storage written, in order.
  const std::vector<std::pair<std::string, at::Tensor>>& storages() const { return storages_; }

 private:
  template <class T>
  void raw(T v) {  // little-endian host assumed, as the reader
    out_.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  void global(const char* module, const char* name) {
    out_ += 'c';
    out_ += module;
    out_ += '\n';
    out_ += name;
    out_ += '\n';
  }
  void put_string(const std::string& s) {
    out_ += 'X';  // BINUNICODE
    raw(static_cast<uint32_t>(s.size()));
    out_ += s;
  }
  void put_int(int64_t v) {
    if (v >= 0 && v < 256) {
      out_ += 'K';
      raw(static_cast<uint8_t>(v));
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      out_ += 'J';
      raw(static_cast<int32_t>(v));
    } else {
      out_ += "\x8a\x08";  // LONG1 of 8 bytes, two's complement
      raw(v);
    }
  }
  void put_int_tuple(c10::IntArrayRef values) {
    out_ += '(';
    for (const auto v : values) put_int(v);
    out_ += 't';
  }
  void put_tensor(const at::Tensor& tensor) {
    at::Tensor t = tensor.detach().cpu().contiguous();
    if (t.storage_offset() != 0 || t.storage().nbytes() != t.nbytes()) t = t.clone();
    const auto key = std::to_string(storages_.size());
    storages_.emplace_back(key, t);
    const std::string storage_type = std::string(c10::toString(t.scalar_type())) + "Storage";
    global("torch._utils", "_rebuild_tensor_v2");
    out_ += '(';
    // The persistent id ('storage', torch.<Type>Storage, key, 'cpu', numel).
    out_ += '(';
    put_string("storage");
    global("torch", storage_type.c_str());
    put_string(key);
    put_string("cpu");
    put_int(t.numel());
    out_ += "tQ";  // TUPLE, BINPERSID
    put_int(0);    // storage offset
    put_int_tuple(t.sizes());
    put_int_tuple(t.strides());
    out_ += '\x89';                        // requires_grad = False
    global("collections", "OrderedDict");  // backward hooks: OrderedDict()
    out_ += ")R";
    out_ += "tR";  // TUPLE, REDUCE
  }
  void put(const IValue& v) {
    if (v.isTensor()) {
      put_tensor(v.toTensor());
    } else if (v.isString()) {
      put_string(v.toStringRef());
    } else if (v.isInt()) {
      put_int(v.toInt());
    } else if (v.isDouble()) {
      // PyTorch 1.13's weights_only reader knows no float opcode (BINFLOAT
      // came in 2.0): a 0-dim float64 tensor, which with_doubles turns back.
      put_tensor(at::scalar_tensor(v.toDouble(), at::TensorOptions().dtype(at::kDouble)));
    } else if (v.isBool()) {
      out_ += v.toBool() ? '\x88' : '\x89';
    } else if (v.isNone()) {
      out_ += 'N';
    } else if (v.isList()) {
      out_ += ']';
      const auto items = v.toListRef();
      if (!items.empty()) {
        out_ += '(';
        for (const auto& item : items) put(item);
        out_ += 'e';  // APPENDS
      }
    } else if (v.isGenericDict()) {
      out_ += '}';
      const auto dict = v.toGenericDict();
      if (!dict.empty()) {
        out_ += '(';
        for (const auto& kv : dict) {
          put(kv.key());
          put(kv.value());
        }
        out_ += 'u';  // SETITEMS
      }
    } else {
      throw std::invalid_argument(
          fmt::format("torch_save_bytes: a {} has no plain pickle (dicts, lists, str, int, "
                      "float, bool, None and tensors do)",
                      v.tagKind()));
    }
  }

  std::string out_;
  std::vector<std::pair<std::string, at::Tensor>> storages_;
};

}  // namespace

c10::IValue with_doubles(c10::IValue value) {
  if (value.isTensor()) {
    const auto& t = value.toTensor();
    if (t.dim() == 0 && t.scalar_type() == at::kDouble) return t.item<double>();
  } else if (value.isGenericDict()) {
    auto dict = value.toGenericDict();
    for (auto it = dict.begin(); it != dict.end(); ++it) it->setValue(with_doubles(it->value()));
  } else if (value.isList()) {
    auto list = value.toList();
    for (size_t i = 0; i < list.size(); ++i) list.set(i, with_doubles(list.get(i)));
  }
  return value;
}

std::vector<char> torch_save_bytes(const c10::IValue& value) {
  MiniPickler pickler;
  const auto pickle = pickler.dump(value);
  std::vector<char> bytes;
  {
    caffe2::serialize::PyTorchStreamWriter writer([&bytes](const void* data, size_t size) {
      const auto* p = static_cast<const char*>(data);
      bytes.insert(bytes.end(), p, p + size);
      return size;
    });
    writer.writeRecord("data.pkl", pickle.data(), pickle.size());
    for (const auto& [key, t] : pickler.storages()) {
      static const char kNothing = 0;  // an empty storage still has its record
      writer.writeRecord("data/" + key, t.nbytes() > 0 ? t.data_ptr() : &kNothing, t.nbytes());
    }
    writer.writeEndOfFile();
  }
  return bytes;
}

c10::IValue read_torch_file(const std::string& path) {
  // A missing file, a folder or a pipe is named before anything is read.
  if (const auto problem = file_problem(path); !problem.empty()) {
    fail(fmt::format("'{}' {}", path, problem));
  }
  char head[15] = {};
  size_t got = 0;
  {
    std::ifstream in(path, std::ios::binary);
    in.read(head, sizeof head);
    got = static_cast<size_t>(in.gcount());
  }
  IValue result;
  try {
    static const char kLegacyMagic[] =  // \x80\x02 LONG1(10) 0x1950a86a20f9469cfc6c
        "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e";
    if (got >= 4 && std::memcmp(head, "PK\x03\x04", 4) == 0) {
      result = read_zip(path);  // the zip reader reads records, not the whole file
    } else if (got == 15 && std::memcmp(head, kLegacyMagic, 15) == 0) {
      result = read_legacy(read_file(path), path);
    } else {
      fail(
          fmt::format("'{}' is not a torch.save file (neither PyTorch's zip format nor its "
                      "legacy one)",
                      path));
    }
  } catch (const c10::Error& e) {  // a malformed zip, a value of an unexpected kind
    fail(fmt::format("'{}' is not a readable torch.save file: {}", path,
                     e.what_without_backtrace()));
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    if (what.rfind(path, 0) == 0) throw;
    fail(fmt::format("'{}' is not a readable torch.save file: {}", path, what));
  }
  if (is_object(result)) {
    fail(
        fmt::format("'{}' holds a pickled {}, not tensors and plain values; torch.save(model) "
                    "pickles the whole module: save model.state_dict() instead",
                    path, result.toStringRef()));
  }
  return result;
}

StateDict read_state_dict(const std::string& path) {
  IValue obj = read_torch_file(path);
  static const char* kWrappers[] = {"state_dict", "model_state_dict", "model_state", "model"};
  for (int depth = 0;; ++depth) {
    if (!obj.isGenericDict()) {
      fail(fmt::format("'{}' holds a {}, not a dict of weights (a state_dict)", path,
                       obj.tagKind()));
    }
    auto d = obj.toGenericDict();
    bool all_tensors = d.size() > 0;
    for (const auto& e : d) {
      all_tensors = all_tensors && e.key().isString() && e.value().isTensor();
    }
    if (all_tensors) break;
    bool unwrapped = false;
    for (const char* k : kWrappers) {
      if (depth < 4 && d.contains(k) && d.at(k).isGenericDict()) {
        obj = d.at(k);
        unwrapped = true;
        break;
      }
    }
    if (!unwrapped) {
      for (const char* k : kWrappers) {
        if (d.contains(k) && is_object(d.at(k))) {
          fail(
              fmt::format("'{}': its '{}' is a pickled {}, not a state_dict; save "
                          "model.state_dict() instead",
                          path, k, d.at(k).toStringRef()));
        }
      }
      std::vector<std::string> keys;
      for (const auto& e : d) {
        keys.push_back(e.key().isString() ? e.key().toStringRef() : e.key().tagKind());
      }
      fail(
          fmt::format("'{}' holds no state_dict: its dict's keys are {}; expected names of "
                      "tensors, or one of 'state_dict', 'model_state_dict', 'model_state', "
                      "'model' holding them",
                      path, fmt::join(keys, ", ")));
    }
  }
  StateDict out;
  bool all_module = true;
  for (const auto& e : obj.toGenericDict()) {
    out.emplace_back(e.key().toStringRef(), e.value().toTensor());
    all_module = all_module && out.back().first.rfind("module.", 0) == 0;
  }
  if (all_module) {
    for (auto& kv : out) kv.first.erase(0, 7);  // DistributedDataParallel's prefix
  }
  return out;
}

}  // namespace fsa::io
