// ann.cpp - the extern "C" shim of dr_retrieval.h over hnswlib (Debian's
// libhnswlib-dev, header-only): an HNSW graph in an inner-product space of
// dim + 1 floats, [q_i, b_i - bias_offset] per item, [u, 1] per query (its
// distance with AVX2 where the CPU has it).
// The only C++ file of driftrec: every exception is caught here and turned
// into a DR_E* code; nothing C++ shows in the header.
#include "dr_retrieval.h"

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

// Everything hnswlib includes, before the malloc macro below.
#include <algorithm>
#include <cassert>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <iostream>
#include <list>
#include <mutex>
#include <queue>
#include <random>
#include <unordered_map>
#include <unordered_set>
#if defined(__SSE__)
#include <cpuid.h>
#include <immintrin.h>
#include <x86intrin.h>
#endif

// hnswlib 0.6.2 prefetches the link after the last one of a neighbour list:
// with a full list on an element's top level that reads 4 bytes past its
// malloc'd block (AddressSanitizer: heap-buffer-overflow in searchBaseLayer).
// Its mallocs get 16 bytes of slack instead (~1/M of the items have upper
// levels, so that is under 1 byte per item).
static void *dr_hnswlib_malloc(size_t n) { return std::malloc(n + 16); }
#define malloc(n) dr_hnswlib_malloc(n)
// It also copies empty neighbour lists into empty vectors, memcpy(NULL, p, 0)
// (UBSan: null pointer passed as argument 1): a copy of nothing is skipped.
static void *dr_hnswlib_memcpy(void *dst, const void *src, size_t n) {
    return n ? std::memcpy(dst, src, n) : dst;
}
#define memcpy(d, s, n) dr_hnswlib_memcpy(d, s, n)
// hnswlib's own headers are system headers (-isystem /usr/include): their
// warnings do not fail the -Werror build.
#include <hnswlib/hnswlib.h>
#undef malloc
#undef memcpy

extern "C" {
#include "dr_err.h"
}

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace {

// The largest capacity: hnswlib's internal ids and visited lists are 32-bit
// (signed in places).
const size_t kMaxCapacity = (size_t)1 << 30;

// Writes the reason for a failure into the caller's errstr (which may be
// NULL), and returns rc.
__attribute__((format(printf, 4, 5))) int say(char *errstr, size_t n, int rc, const char *fmt, ...) {
    if (errstr && n) {
        va_list ap;
        va_start(ap, fmt);
        std::vsnprintf(errstr, n, fmt, ap);
        va_end(ap);
    }
    return rc;
}

int code_of(const std::exception &e) {
    // hnswlib reports its failed mallocs as runtime_error("Not enough memory...")
    if (dynamic_cast<const std::bad_alloc *>(&e) || std::strstr(e.what(), "memory")) return DR_ENOMEM;
    return DR_EINVAL;
}

bool finite_all(const float *v, size_t n) {
    for (size_t k = 0; k < n; k++)
        if (!std::isfinite(v[k])) return false;
    return true;
}

// hnswlib labels: idx in the low 40 bits, the item's generation above them.
// An item whose vector is replaced (replace_in_place = 0) is marked deleted
// and inserted again under its next generation: the label stays unique.
const int kGenShift = 40;
const int64_t kMaxIdx = ((int64_t)1 << kGenShift) - 1;
// A loaded index labels its dead slots (removed items, replaced copies)
// internal id | kDeadGen << 40, a generation claim() never hands out.
const uint32_t kDeadGen = (1u << (64 - kGenShift)) - 1;

#if defined(__x86_64__)
// The inner-product distance 1 - a·b with AVX2 and FMA, chosen at run time
// where the CPU has them: hnswlib picks its SIMD at compile time, and the
// build targets baseline x86-64 (SSE). 22-28% more searches per CPU second
// at 300k items, M 48 (docs/RETRIEVAL.md).
__attribute__((target("avx2,fma"))) float ip_distance_avx2(const void *pa, const void *pb,
                                                            const void *pdim) {
    const float *a = static_cast<const float *>(pa), *b = static_cast<const float *>(pb);
    size_t d = *static_cast<const size_t *>(pdim), k = 0;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (; k + 16 <= d; k += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(b + k + 8), s1);
    }
    if (k + 8 <= d) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
        k += 8;
    }
    s0 = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float sum = _mm_cvtss_f32(h);
    for (; k < d; k++) sum += a[k] * b[k];
    return 1.0f - sum;
}
#endif

// hnswlib's inner-product space with the AVX2 distance where it runs.
class IpSpace : public hnswlib::SpaceInterface<float> {
    hnswlib::InnerProductSpace base_;
    size_t dim_;
    hnswlib::DISTFUNC<float> dist_;

  public:
    explicit IpSpace(size_t dim) : base_(dim), dim_(dim), dist_(base_.get_dist_func()) {
#if defined(__x86_64__)
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) dist_ = ip_distance_avx2;
#endif
    }
    size_t get_data_size() override { return dim_ * sizeof(float); }
    hnswlib::DISTFUNC<float> get_dist_func() override { return dist_; }
    void *get_dist_func_param() override { return &dim_; }
};

}  // namespace

struct dr_ann {
    dr_ann_conf_t conf;
    IpSpace *space;
    hnswlib::HierarchicalNSW<float> *hnsw;
    std::unordered_map<int64_t, uint32_t> gen; // items inserted again: their generation
};

extern "C" void dr_ann_conf_default(dr_ann_conf_t *conf, int dim) {
    if (!conf) return;
    std::memset(conf, 0, sizeof(*conf));
    conf->dim = dim;
    conf->capacity = 1024;
    conf->M = 48;
    conf->ef_construction = 100;
    conf->ef_search = 50;
    conf->bias_offset = 0.0f;
    conf->seed = 100;
}

static const char *conf_error(const dr_ann_conf_t *c) {
    if (c->dim < 1 || c->dim > DR_ANN_MAX_DIM) return "retrieval dim must be in [1, 1024]";
    if (c->capacity < 1 || c->capacity > kMaxCapacity) return "retrieval capacity must be in [1, 2^30]";
    if (c->M < 2 || c->M > 256) return "retrieval M must be in [2, 256]";
    if (c->ef_construction < 1) return "retrieval ef_construction must be at least 1";
    if (c->ef_search < 1) return "retrieval ef_search must be at least 1";
    if (!std::isfinite(c->bias_offset)) return "retrieval bias_offset must be finite";
    return nullptr;
}

extern "C" int dr_ann_new(dr_ann_t **out, const dr_ann_conf_t *conf, char *errstr,
                          size_t errstr_size) {
    if (out) *out = nullptr;
    if (!out || !conf) {
        return say(errstr, errstr_size, DR_EINVAL, "dr_ann_new: NULL argument");
    }
    if (const char *bad = conf_error(conf)) return say(errstr, errstr_size, DR_ECONFIG, "%s", bad);
    dr_ann *a = new (std::nothrow) dr_ann();
    if (!a) return say(errstr, errstr_size, DR_ENOMEM, "out of memory");
    a->conf = *conf;
    try {
        a->space = new IpSpace((size_t)conf->dim + 1);
        a->hnsw = new hnswlib::HierarchicalNSW<float>(a->space, conf->capacity, (size_t)conf->M,
                                                       (size_t)conf->ef_construction,
                                                       (size_t)conf->seed);
        a->hnsw->setEf((size_t)conf->ef_search);
    } catch (const std::exception &e) {
        dr_ann_free(a);
        return say(errstr, errstr_size, code_of(e), "hnswlib: %s", e.what());
    }
    *out = a;
    return 0;
}

extern "C" void dr_ann_free(dr_ann_t *a) {
    if (!a) return;
    delete a->hnsw;
    delete a->space;
    delete a;
}

// Doubles the capacity until `need` slots fit. Not thread-safe (callers hold
// the index to themselves).
static void reserve(dr_ann_t *a, size_t need) {
    size_t cap = a->hnsw->max_elements_;
    if (need <= cap) return;
    if (need > kMaxCapacity) throw std::bad_alloc();
    while (cap < need) cap = cap > kMaxCapacity / 2 ? kMaxCapacity : cap * 2;
    a->hnsw->resizeIndex(cap);
}

// The hnswlib label item idx has now (generation 0 unless replaced).
static hnswlib::labeltype label_of(const dr_ann_t *a, int64_t idx) {
    auto it = a->gen.find(idx);
    uint64_t g = it == a->gen.end() ? 0 : it->second;
    return (hnswlib::labeltype)((uint64_t)idx | (g << kGenShift));
}

// The item's state: 0 unknown, 1 live, 2 removed (or replaced: never seen
// by the caller, whose item is under a later label).
enum { ABSENT = 0, LIVE = 1, REMOVED = 2 };
static int state_of(const dr_ann_t *a, int64_t idx) {
    auto it = a->hnsw->label_lookup_.find(label_of(a, idx));
    if (it == a->hnsw->label_lookup_.end()) return ABSENT;
    return a->hnsw->isMarkedDeleted(it->second) ? REMOVED : LIVE;
}

// The label item idx goes in under now. A live copy is updated in place
// (addPoint on a known label: hnswlib repairs its links) when in_place,
// else marked deleted and the item inserted again under its next
// generation; so is a removed one unless replace_in_place. Not thread-safe.
static hnswlib::labeltype claim(dr_ann_t *a, int64_t idx, bool in_place) {
    int st = state_of(a, idx);
    if (st == ABSENT || (st == LIVE && in_place) || (st == REMOVED && a->conf.replace_in_place))
        return label_of(a, idx); // a new slot, or addPoint updates (and undeletes)
    if (st == LIVE) a->hnsw->markDelete(label_of(a, idx));
    uint32_t &g = a->gen[idx];
    g = (g + 1) & ((1u << (64 - kGenShift)) - 1); // wraps after 2^24: the oldest slot is reused in place
    if (g == kDeadGen) g = 0;                     // the generation of the dead slots of a loaded index
    return label_of(a, idx);
}

// One item into the graph under label; x is dim + 1 floats of scratch.
// Thread-safe against put() of other labels when no resize is needed.
static void put(dr_ann_t *a, hnswlib::labeltype label, const float *vec, float bias, float *x) {
    const size_t d = (size_t)a->conf.dim;
    std::memcpy(x, vec, d * sizeof(float));
    x[d] = bias - a->conf.bias_offset;
    a->hnsw->addPoint(x, label);
}

static bool bias_ok(const dr_ann_t *a, float bias) {
    return std::isfinite(bias) && std::isfinite(bias - a->conf.bias_offset);
}

extern "C" int dr_ann_upsert(dr_ann_t *a, int64_t idx, const float *vec, float bias) {
    if (!a || !vec || idx < 0 || idx > kMaxIdx || !bias_ok(a, bias) ||
        !finite_all(vec, (size_t)a->conf.dim))
        return DR_EINVAL;
    try {
        if (!a->conf.replace_in_place || state_of(a, idx) == ABSENT)
            reserve(a, a->hnsw->cur_element_count + 1); // before anything changes
        hnswlib::labeltype label = claim(a, idx, a->conf.replace_in_place != 0);
        float x[DR_ANN_MAX_DIM + 1];
        put(a, label, vec, bias, x);
    } catch (const std::exception &e) {
        return code_of(e);
    } catch (...) {
        return DR_EINVAL;
    }
    return 0;
}

// Rows 0..n-1 into the index with `threads` threads: dr_ann_build (strict:
// a row not finite fails the whole build before anything changes) and
// dr_ann_build_stoppable (such rows left out; should_stop polled before
// every row).
static int build_rows(dr_ann_t *a, const float *vecs, const float *bias, size_t n, int threads,
                      bool strict, int (*should_stop)(void *), void *ctx, size_t *built) {
    if (built) *built = 0;
    if (!a || (n && (!vecs || !bias)) || threads < 1) return DR_EINVAL;
    const size_t d = (size_t)a->conf.dim;
    if (n > kMaxCapacity) return DR_EINVAL;
    auto row_ok = [&](size_t i) { return bias_ok(a, bias[i]) && finite_all(vecs + i * d, d); };
    if (strict)
        for (size_t i = 0; i < n; i++)
            if (!row_ok(i)) return DR_EINVAL;
    auto stop = [&]() { return should_stop && should_stop(ctx) != 0; };
    try {
        // the rows that go in (all of them when strict), their labels
        // claimed below; a pass over n rows, polled every 64k rows
        std::vector<bool> take(n, true);
        size_t fresh = 0; // rows that take a new slot
        for (size_t i = 0; i < n; i++) {
            if ((i & 0xffff) == 0 && stop()) return DR_ESTOPPED;
            if (!strict && !row_ok(i)) {
                take[i] = false;
                continue;
            }
            int st = state_of(a, (int64_t)i);
            fresh += st == ABSENT || (st == REMOVED && !a->conf.replace_in_place);
        }
        reserve(a, a->hnsw->cur_element_count + fresh); // before anything changes
        // Rows already live are updated in place whatever replace_in_place
        // says: deleting many items before inserting them again leaves the
        // new copies nothing live to link to, and some unreachable.
        std::vector<hnswlib::labeltype> labels(n);
        for (size_t i = 0; i < n; i++)
            if (take[i]) labels[i] = claim(a, (int64_t)i, true);
        std::atomic<int> err{0};
        std::atomic<size_t> next{0}, done{0};
        auto work = [&]() {
            float x[DR_ANN_MAX_DIM + 1];
            size_t mine = 0;
            try {
                // small blocks, taken in order: the graph grows roughly in
                // row order whatever the thread count
                for (;;) {
                    size_t first = next.fetch_add(256);
                    if (first >= n || err.load()) break;
                    size_t end = first + 256 < n ? first + 256 : n;
                    for (size_t i = first; i < end; i++) {
                        if (stop()) {
                            int zero = 0;
                            err.compare_exchange_strong(zero, DR_ESTOPPED);
                            break;
                        }
                        if (!take[i]) continue;
                        put(a, labels[i], vecs + i * d, bias[i], x);
                        mine++;
                    }
                }
            } catch (const std::exception &e) {
                int zero = 0;
                err.compare_exchange_strong(zero, code_of(e));
            } catch (...) {
                int zero = 0;
                err.compare_exchange_strong(zero, DR_EINVAL);
            }
            done.fetch_add(mine);
        };
        size_t nt = (size_t)threads < n / 256 + 1 ? (size_t)threads : n / 256 + 1;
        std::vector<std::thread> pool;
        try {
            for (size_t t = 1; t < nt; t++) pool.emplace_back(work);
        } catch (const std::exception &) {
            // fewer threads than asked: the ones started and this one finish the work
        }
        work();
        for (auto &t : pool) t.join();
        if (built) *built = done.load();
        return err.load();
    } catch (const std::exception &e) {
        return code_of(e); // the take and label passes, reserve
    }
}

extern "C" int dr_ann_build(dr_ann_t *a, const float *vecs, const float *bias, size_t n,
                            int threads) {
    return build_rows(a, vecs, bias, n, threads, true, nullptr, nullptr, nullptr);
}

extern "C" int dr_ann_build_stoppable(dr_ann_t *a, const float *vecs, const float *bias, size_t n,
                                      int threads, int (*should_stop)(void *ctx), void *ctx,
                                      size_t *built) {
    return build_rows(a, vecs, bias, n, threads, false, should_stop, ctx, built);
}

extern "C" int dr_ann_remove(dr_ann_t *a, int64_t idx) {
    if (!a || idx < 0) return DR_EINVAL;
    if (idx > kMaxIdx) return DR_ENOTFOUND;
    try {
        if (state_of(a, idx) != LIVE) return DR_ENOTFOUND;
        a->hnsw->markDelete(label_of(a, idx));
    } catch (const std::exception &e) {
        return code_of(e);
    }
    return 0;
}

extern "C" int dr_ann_search(const dr_ann_t *a, const float *query, size_t k, int64_t *out_idx,
                             float *out_score, size_t *out_n) {
    if (out_n) *out_n = 0;
    if (!a || !query || !out_idx || !out_n || k == 0) return DR_EINVAL;
    const size_t d = (size_t)a->conf.dim;
    if (!finite_all(query, d)) return DR_EINVAL;
    try {
        float x[DR_ANN_MAX_DIM + 1];
        std::memcpy(x, query, d * sizeof(float));
        x[d] = 1.0f;
        auto pq = a->hnsw->searchKnn(x, k); // worst on top
        size_t n = pq.size();
        for (size_t j = n; j-- > 0;) {
            // distance = 1 - (u·q + b - offset)
            out_idx[j] = (int64_t)(pq.top().second & (hnswlib::labeltype)kMaxIdx);
            if (out_score) out_score[j] = 1.0f - pq.top().first + a->conf.bias_offset;
            pq.pop();
        }
        *out_n = n;
    } catch (const std::exception &e) {
        return code_of(e);
    }
    return 0;
}

extern "C" int dr_ann_get(const dr_ann_t *a, int64_t idx, float *vec, float *bias) {
    if (!a || idx < 0) return DR_EINVAL;
    if (idx > kMaxIdx) return DR_ENOTFOUND;
    try {
        auto it = a->hnsw->label_lookup_.find(label_of(a, idx));
        if (it == a->hnsw->label_lookup_.end() || a->hnsw->isMarkedDeleted(it->second)) return DR_ENOTFOUND;
        const float *x = reinterpret_cast<const float *>(a->hnsw->getDataByInternalId(it->second));
        const size_t d = (size_t)a->conf.dim;
        if (vec) std::memcpy(vec, x, d * sizeof(float));
        if (bias) *bias = x[d] + a->conf.bias_offset;
    } catch (const std::exception &e) {
        return code_of(e);
    }
    return 0;
}

extern "C" int dr_ann_set_ef(dr_ann_t *a, int ef_search) {
    if (!a || ef_search < 1) return DR_EINVAL;
    a->conf.ef_search = ef_search;
    a->hnsw->setEf((size_t)ef_search);
    return 0;
}

extern "C" size_t dr_ann_count(const dr_ann_t *a) {
    return a ? a->hnsw->cur_element_count - a->hnsw->num_deleted_ : 0;
}

extern "C" size_t dr_ann_capacity(const dr_ann_t *a) { return a ? a->hnsw->max_elements_ : 0; }

extern "C" size_t dr_ann_dead(const dr_ann_t *a) { return a ? a->hnsw->num_deleted_ : 0; }

extern "C" size_t dr_ann_bytes(const dr_ann_t *a) {
    if (!a) return 0;
    const hnswlib::HierarchicalNSW<float> *h = a->hnsw;
    size_t cap = h->max_elements_, n = h->cur_element_count;
    size_t b = sizeof(*a) + sizeof(*h) + sizeof(*a->space);
    b += cap * h->size_data_per_element_;           // level 0: links, vector, label
    b += cap * sizeof(char *) + cap * sizeof(int);  // upper-level list pointers, levels
    b += cap * sizeof(std::mutex);                  // a lock per slot
    b += hnswlib::HierarchicalNSW<float>::max_update_element_locks * sizeof(std::mutex);
    b += cap * sizeof(hnswlib::vl_type);            // one visited list (one per concurrent search)
    for (size_t i = 0; i < n; i++)                  // upper levels
        if (h->element_levels_[i] > 0) b += h->size_links_per_element_ * (size_t)h->element_levels_[i] + 1;
    // the label tables: a node (next, key, value, hash, malloc header) per
    // entry, a pointer per bucket
    b += n * (sizeof(void *) + sizeof(hnswlib::labeltype) + sizeof(hnswlib::tableint) + sizeof(size_t) + 8) +
         h->label_lookup_.bucket_count() * sizeof(void *);
    b += a->gen.size() * (sizeof(void *) + sizeof(int64_t) + sizeof(uint32_t) + 4 + sizeof(size_t) + 8) +
         a->gen.bucket_count() * sizeof(void *);
    return b;
}

// ---- saving and loading ---------------------------------------------------
//
// index.meta, in this machine's byte order (the files are this instance's
// cache, read back by the same build on the same machine): the magic, dim,
// M, ef_construction, the bias offset, the graph file's token and size, and
// the ids the saved indices stood for. The graph is hnswlib's own format,
// in index-<token>.hnsw.

namespace {

const char kMetaMagic[8] = {'D', 'R', 'A', 'N', 'N', 'v', '1', '\0'};

struct MetaHead {
    char magic[8];
    uint32_t dim, M, ef_construction;
    float bias_offset;
    uint64_t token, graph_bytes, n_ids;
};

std::string graph_path(const char *dir, uint64_t token) {
    char name[64];
    std::snprintf(name, sizeof(name), "/index-%016llx.hnsw", (unsigned long long)token);
    return std::string(dir) + name;
}

// say() with `what` and errno's text for the two %s of fmt.
int fail(char *errstr, size_t n, int rc, const char *fmt, const std::string &what) {
    return say(errstr, n, rc, fmt, what.c_str(), std::strerror(errno));
}

// Removes every graph file in dir but `keep`: the previous save's, and any
// a save that crashed before its rename left (each the size of the index).
void remove_other_graphs(const char *dir, const std::string &keep) {
    DIR *d = ::opendir(dir);
    if (!d) return;
    while (const struct dirent *e = ::readdir(d)) {
        size_t len = std::strlen(e->d_name);
        if (len < 11 || std::strncmp(e->d_name, "index-", 6) != 0 || std::strcmp(e->d_name + len - 5, ".hnsw") != 0)
            continue;
        std::string path = std::string(dir) + "/" + e->d_name;
        if (path != keep) std::remove(path.c_str());
    }
    ::closedir(d);
}

// The previous save's head, if any.
bool read_head(const std::string &meta, MetaHead *h) {
    FILE *f = std::fopen(meta.c_str(), "rb");
    if (!f) return false;
    bool ok = std::fread(h, sizeof(*h), 1, f) == 1 && std::memcmp(h->magic, kMetaMagic, 8) == 0;
    std::fclose(f);
    return ok;
}

// hnswlib's header of a saved graph (saveIndex's order), checked before
// hnswlib reads the file: its loader trusts the counts and sizes it finds
// there (it allocates max_elements times the element size, and seeks by
// their product). True when they are the ones an index of this dimension
// and M writes, and the file holds the elements they announce.
bool graph_header_ok(const std::string &path, size_t dim, size_t M, uint64_t file_bytes) {
    FILE *f = std::fopen(path.c_str(), "rb");
    if (!f) return false;
    size_t offset_level0, max_elements, count, size_per_element, label_offset, offset_data;
    int max_level;
    hnswlib::tableint entry;
    size_t max_m, max_m0, m;
    bool ok = std::fread(&offset_level0, sizeof(size_t), 1, f) == 1 && std::fread(&max_elements, sizeof(size_t), 1, f) == 1 &&
              std::fread(&count, sizeof(size_t), 1, f) == 1 && std::fread(&size_per_element, sizeof(size_t), 1, f) == 1 &&
              std::fread(&label_offset, sizeof(size_t), 1, f) == 1 && std::fread(&offset_data, sizeof(size_t), 1, f) == 1 &&
              std::fread(&max_level, sizeof(int), 1, f) == 1 && std::fread(&entry, sizeof(entry), 1, f) == 1 &&
              std::fread(&max_m, sizeof(size_t), 1, f) == 1 && std::fread(&max_m0, sizeof(size_t), 1, f) == 1 &&
              std::fread(&m, sizeof(size_t), 1, f) == 1;
    std::fclose(f);
    size_t links0 = 2 * M * sizeof(hnswlib::tableint) + sizeof(hnswlib::linklistsizeint);
    size_t data = (dim + 1) * sizeof(float), header = 6 * sizeof(size_t) + sizeof(int) + sizeof(entry) +
                                                        3 * sizeof(size_t) + sizeof(double) + sizeof(size_t);
    return ok && offset_level0 == 0 && m == M && max_m == M && max_m0 == 2 * M && offset_data == links0 &&
           label_offset == links0 + data && size_per_element == links0 + data + sizeof(hnswlib::labeltype) &&
           max_elements <= kMaxCapacity && count <= max_elements && max_level >= 0 && max_level < 64 &&
           (count == 0 || entry < count) && file_bytes >= header && (file_bytes - header) / size_per_element >= count;
}

bool sync_path(const std::string &path) {
    int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) return false;
    bool ok = ::fsync(fd) == 0;
    ::close(fd);
    return ok;
}

}  // namespace

extern "C" int dr_ann_save(const dr_ann_t *a, const char *dir, const int64_t *ids, size_t n_ids, char *errstr,
                           size_t errstr_size) {
    if (!a || !dir || (n_ids && !ids)) return DR_EINVAL;
    hnswlib::HierarchicalNSW<float> *h = a->hnsw;
    for (const auto &kv : h->label_lookup_) // every live item is named by ids
        if (!h->isMarkedDeleted(kv.second) && (uint64_t)(kv.first & (hnswlib::labeltype)kMaxIdx) >= n_ids)
            return DR_EINVAL;
    std::string meta = std::string(dir) + "/index.meta", tmp = meta + ".tmp";
    MetaHead old;
    bool had = read_head(meta, &old); // its token is not reused
    std::random_device rd;
    MetaHead head;
    std::memcpy(head.magic, kMetaMagic, 8);
    head.dim = (uint32_t)a->conf.dim;
    head.M = (uint32_t)h->M_;
    head.ef_construction = (uint32_t)h->ef_construction_;
    head.bias_offset = a->conf.bias_offset;
    head.token = ((uint64_t)rd() << 32) ^ rd() ^ (uint64_t)std::time(nullptr);
    if (had && head.token == old.token) head.token++;
    head.n_ids = n_ids;
    std::string graph = graph_path(dir, head.token);
    try {
        h->saveIndex(graph);
    } catch (const std::exception &e) {
        std::remove(graph.c_str());
        return fail(errstr, errstr_size, DR_EIO, "%s: %s", graph + " (" + e.what() + ")");
    }
    struct stat st;
    if (::stat(graph.c_str(), &st) != 0 || st.st_size <= 0 || !sync_path(graph)) {
        std::remove(graph.c_str());
        return fail(errstr, errstr_size, DR_EIO, "writing %s: %s", graph);
    }
    head.graph_bytes = (uint64_t)st.st_size;
    FILE *f = std::fopen(tmp.c_str(), "wb");
    bool ok = f && std::fwrite(&head, sizeof(head), 1, f) == 1 &&
              (n_ids == 0 || std::fwrite(ids, sizeof(int64_t), n_ids, f) == n_ids) && std::fflush(f) == 0 &&
              ::fsync(::fileno(f)) == 0;
    if (f && std::fclose(f) != 0) ok = false;
    if (!ok || std::rename(tmp.c_str(), meta.c_str()) != 0) {
        int rc = fail(errstr, errstr_size, DR_EIO, "writing %s: %s", tmp);
        std::remove(tmp.c_str());
        std::remove(graph.c_str());
        return rc;
    }
    (void)sync_path(dir); // the rename itself
    remove_other_graphs(dir, graph);
    return 0;
}

extern "C" int dr_ann_load(dr_ann_t **out, const char *dir, const dr_ann_conf_t *conf, const int64_t *ids,
                           size_t n_ids, size_t *kept, char *errstr, size_t errstr_size) {
    if (out) *out = nullptr;
    if (kept) *kept = 0;
    if (!out || !dir || !conf || (n_ids && !ids)) return DR_EINVAL;
    if (const char *bad = conf_error(conf)) return say(errstr, errstr_size, DR_ECONFIG, "%s", bad);
    std::string meta = std::string(dir) + "/index.meta";
    FILE *f = std::fopen(meta.c_str(), "rb");
    if (!f) {
        if (errno == ENOENT) return DR_ENOTFOUND;
        return fail(errstr, errstr_size, DR_EIO, "%s: %s", meta);
    }
    MetaHead head;
    std::vector<int64_t> saved;
    bool ok = std::fread(&head, sizeof(head), 1, f) == 1 && std::memcmp(head.magic, kMetaMagic, 8) == 0 &&
              head.n_ids <= (uint64_t)kMaxIdx + 1;
    if (ok) {
        try {
            saved.resize(head.n_ids);
        } catch (const std::exception &) {
            ok = false;
        }
        ok = ok && (head.n_ids == 0 || std::fread(saved.data(), sizeof(int64_t), head.n_ids, f) == head.n_ids) &&
             std::fgetc(f) == EOF;
    }
    std::fclose(f);
    if (!ok) {
        return say(errstr, errstr_size, DR_ECORRUPT, "%s: not a saved index, or cut short", meta.c_str());
    }
    if (head.dim != (uint32_t)conf->dim || head.M != (uint32_t)conf->M) {
        return say(errstr, errstr_size, DR_ECONFIG, "the saved index has dim %u and M %u, not %d and %d", head.dim,
                   head.M, conf->dim, conf->M);
    }
    std::string graph = graph_path(dir, head.token);
    struct stat st;
    if (::stat(graph.c_str(), &st) != 0 || (uint64_t)st.st_size != head.graph_bytes || !std::isfinite(head.bias_offset)) {
        return say(errstr, errstr_size, DR_ECORRUPT, "%s: missing or not the size saved", graph.c_str());
    }
    if (!graph_header_ok(graph, (size_t)conf->dim, (size_t)conf->M, head.graph_bytes)) {
        return say(errstr, errstr_size, DR_ECORRUPT, "%s: not the graph its meta file names", graph.c_str());
    }
    dr_ann *a = new (std::nothrow) dr_ann();
    if (!a) return DR_ENOMEM;
    a->conf = *conf;
    a->conf.bias_offset = head.bias_offset;
    try {
        a->space = new IpSpace((size_t)conf->dim + 1);
        a->hnsw = new hnswlib::HierarchicalNSW<float>(a->space, graph, false, 0);
        hnswlib::HierarchicalNSW<float> *h = a->hnsw;
        // hnswlib 0.6.2's loading constructor leaves num_deleted_ as it
        // found it (garbage) and then counts the deleted slots onto it, and
        // seeds no generator: both set here (the count again below)
        h->num_deleted_ = 0;
        h->level_generator_.seed((unsigned)conf->seed);
        h->update_probability_generator_.seed((unsigned)conf->seed + 1);
        // hnswlib trusts the file for its layout: it must be the one this
        // dimension and M make
        if (h->M_ != (size_t)conf->M || h->label_offset_ != h->offsetData_ + h->data_size_ ||
            h->size_data_per_element_ != h->label_offset_ + sizeof(hnswlib::labeltype) ||
            h->cur_element_count > h->max_elements_ || h->max_elements_ > kMaxCapacity ||
            (h->cur_element_count > 0 && h->enterpoint_node_ >= h->cur_element_count))
            throw std::invalid_argument("the graph does not match its meta file");
        // and every link within it, on every level: searches follow them
        // without a check
        for (hnswlib::tableint i = 0; i < h->cur_element_count; i++) {
            int levels = h->element_levels_[i];
            if (levels < 0 || levels > h->maxlevel_) throw std::invalid_argument("a level out of range");
            for (int l = 0; l <= levels; l++) {
                hnswlib::linklistsizeint *ll = l == 0 ? h->get_linklist0(i) : h->get_linklist(i, l);
                size_t count = h->getListCount(ll), cap = l == 0 ? h->maxM0_ : h->maxM_;
                const hnswlib::tableint *links = reinterpret_cast<const hnswlib::tableint *>(ll + 1);
                if (count > cap) throw std::invalid_argument("a neighbour list past its size");
                for (size_t k = 0; k < count; k++)
                    if (links[k] >= h->cur_element_count) throw std::invalid_argument("a link out of range");
            }
        }
        // the items by their ids now
        std::unordered_map<int64_t, int64_t> row_of;
        row_of.reserve(n_ids);
        for (size_t j = 0; j < n_ids; j++)
            if (ids[j] >= 0) row_of.emplace(ids[j], (int64_t)j);
        std::vector<bool> taken(n_ids, false);
        h->label_lookup_.clear();
        size_t live = 0;
        for (hnswlib::tableint i = 0; i < h->cur_element_count; i++) {
            hnswlib::labeltype label = h->getExternalLabel(i);
            uint64_t idx = label & (hnswlib::labeltype)kMaxIdx;
            int64_t row = -1;
            if (!h->isMarkedDeleted(i) && idx < head.n_ids) {
                auto it = row_of.find(saved[idx]);
                if (it != row_of.end() && !taken[(size_t)it->second]) row = it->second;
            }
            if (row >= 0) {
                taken[(size_t)row] = true;
                h->setExternalLabel(i, (hnswlib::labeltype)row);
                h->label_lookup_[(hnswlib::labeltype)row] = i;
                live++;
            } else {
                if (!h->isMarkedDeleted(i)) h->markDeletedInternal(i);
                hnswlib::labeltype dead = (hnswlib::labeltype)i | ((hnswlib::labeltype)kDeadGen << kGenShift);
                h->setExternalLabel(i, dead);
                h->label_lookup_[dead] = i;
            }
        }
        size_t dead = 0;
        for (hnswlib::tableint i = 0; i < h->cur_element_count; i++) dead += h->isMarkedDeleted(i);
        h->num_deleted_ = dead;
        h->setEf((size_t)conf->ef_search);
        a->conf.capacity = h->max_elements_;
        if (kept) *kept = live;
    } catch (const std::exception &e) {
        int rc = code_of(e) == DR_ENOMEM ? DR_ENOMEM : DR_ECORRUPT; /* anything else: not our graph */
        dr_ann_free(a);
        return say(errstr, errstr_size, rc, "%s: %s", graph.c_str(), e.what());
    }
    *out = a;
    return 0;
}
