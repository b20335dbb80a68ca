// ann.cpp - the extern "C" shim of dr_retrieval.h over hnswlib (Debian's
// libhnswlib-dev, header-only): an HNSW graph in an inner-product space of
// dim + 1 floats, [q_i, b_i - bias_offset] per item, [u, 1] per query (its
// distance with AVX2 where the CPU has it).
// The only C++ file of driftrec: every exception is caught here and turned
// into a DR_E* code; nothing C++ shows in the header.
#include "dr_retrieval.h"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
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

namespace {

// The largest capacity: hnswlib's internal ids and visited lists are 32-bit
// (signed in places).
const size_t kMaxCapacity = (size_t)1 << 30;

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
        if (errstr && errstr_size) std::snprintf(errstr, errstr_size, "dr_ann_new: NULL argument");
        return DR_EINVAL;
    }
    if (const char *bad = conf_error(conf)) {
        if (errstr && errstr_size) std::snprintf(errstr, errstr_size, "%s", bad);
        return DR_ECONFIG;
    }
    dr_ann *a = new (std::nothrow) dr_ann();
    if (!a) {
        if (errstr && errstr_size) std::snprintf(errstr, errstr_size, "out of memory");
        return DR_ENOMEM;
    }
    a->conf = *conf;
    try {
        a->space = new IpSpace((size_t)conf->dim + 1);
        a->hnsw = new hnswlib::HierarchicalNSW<float>(a->space, conf->capacity, (size_t)conf->M,
                                                       (size_t)conf->ef_construction,
                                                       (size_t)conf->seed);
        a->hnsw->setEf((size_t)conf->ef_search);
    } catch (const std::exception &e) {
        if (errstr && errstr_size) std::snprintf(errstr, errstr_size, "hnswlib: %s", e.what());
        int rc = code_of(e);
        dr_ann_free(a);
        return rc;
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
