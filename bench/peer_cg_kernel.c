/* The exact pricing step of bench/peer_cg.py: for one root peer i and duals v, every valid peer group
   whose first member in a fixed order (pos) is i, searched depth first, and a proven upper bound on the
   largest red(S) = w(S) - v(S) among them. bench/peer_cg_search.py compiles and calls it; the proof is in
   bench/peer_cg.py's docstring, the node bound in halves()/cheap_bound()/local_bound() below:

   A node is a partial group P (red(P) known) and its candidates C: peers after i in pos, compatible with
   all of P, speaking a language all of P speak, their department not full. Every group below it is
   P + Q, Q a subset of C of r members (size_min <= |P| + r <= size_max), so
     red(P + Q) = red(P) + sum_{k in Q} (w(k, P) - v_k) + sum_{pairs k, l of Q} w_kl,
   and the last sum is at most sum_{k in Q} h_k(r), h_k(r) = half of k's r - 1 largest w_kl over l in a
   set holding Q (C, or an ancestor's candidates: a superset, so larger: still a bound). Hence
   red(P + Q) <= red(P) + the r largest of (w(k, P) - v_k + h_k(r)) over C; for r = 2 the best pair is
   taken exactly. A node whose bound is at most max(0, the best red met) is not searched: nothing below
   it can raise the maximum. When the node budget is spent, a node that would branch credits its bound
   instead (credit): the maximum is then at most max(best, credit). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define MAXS 8
#define LOCAL 160

typedef struct {
  int n; const uint8_t *ok; const int32_t *w; const double *v; const int32_t *dept; int limit;
  const uint64_t *lang; int smin, smax; long long budget, nodes; double eps, floor_, best, credit;
  int members[MAXS]; int *dcount;
  int keep, nkept; int32_t *kg; double *kr;   /* kept groups (keep x smax, -1 padded) and their red */
  int32_t *cbuf[MAXS + 1]; double *wbuf[MAXS + 1]; double *hroot; double *hdep[MAXS + 1]; int32_t *obuf[MAXS + 1]; double *owbuf[MAXS + 1]; double *kbuf[MAXS + 1]; int *ordbuf[MAXS + 1];
  double *hloc; double *tmp; int *idx;
} Ctx;

static void keep_group(Ctx *c, int p, double red) {
  int slot = -1;
  if (c->nkept < c->keep) slot = c->nkept++;
  else { int lo = 0; for (int q = 1; q < c->keep; q++) if (c->kr[q] < c->kr[lo]) lo = q; if (c->kr[lo] < red) slot = lo; }
  if (slot < 0) return;
  c->kr[slot] = red;
  for (int q = 0; q < c->smax; q++) c->kg[slot * c->smax + q] = q < p ? c->members[q] : -1;
}

/* top (r - 1) of w[k][l] over l in cand, l != k, ok: half-sums h[k * MAXS + r] for r = 1..rmax */
static void halves(Ctx *c, const int32_t *cand, int m, int rmax, double *h) {
  int need = rmax - 1;
  for (int a = 0; a < m; a++) {
    double top[MAXS]; int nt = 0;
    const uint8_t *okr = c->ok + (size_t)cand[a] * c->n; const int32_t *wr = c->w + (size_t)cand[a] * c->n;
    for (int b = 0; b < m && need > 0; b++) {
      if (b == a || !okr[cand[b]]) continue;
      double x = wr[cand[b]];
      if (nt < need) { int q = nt++; while (q > 0 && top[q - 1] < x) { top[q] = top[q - 1]; q--; } top[q] = x; }
      else if (x > top[need - 1]) { int q = need - 1; while (q > 0 && top[q - 1] < x) { top[q] = top[q - 1]; q--; } top[q] = x; }
    }
    double s = 0; h[a * MAXS + 1] = 0;
    for (int r = 2; r <= rmax; r++) { if (r - 2 < nt) s += top[r - 2]; else s += 1e9; h[a * MAXS + r] = 0.5 * s; }
  }
}

static double topsum(double *x, int m, int r) { /* sum of the r largest (x is scratch, reordered) */
  double s = 0;
  for (int q = 0; q < r; q++) { int b = q; for (int k = q + 1; k < m; k++) if (x[k] > x[b]) b = k; double t = x[q]; x[q] = x[b]; x[b] = t; s += x[q]; }
  return s;
}

/* bound with given per-peer halves (hg: global-index table n x MAXS) */
static double cheap_bound(Ctx *c, int p, double red, const int32_t *cand, const double *wp, int m, const double *hg) {
  int rmin = c->smin - p > 1 ? c->smin - p : 1, rmax = c->smax - p < m ? c->smax - p : m;
  if (rmax < rmin) return -INFINITY;
  double best = -INFINITY;
  for (int r = rmin; r <= rmax; r++) {
    for (int a = 0; a < m; a++) c->tmp[a] = wp[a] - c->v[cand[a]] + (r > 1 ? hg[(size_t)cand[a] * MAXS + r] : 0);
    double val = topsum(c->tmp, m, r);
    if (red + val > best) best = red + val;
  }
  return best;
}

/* tighter: halves over this node's candidates (stored into hg for the children), the best pair exact */
static double local_bound(Ctx *c, int p, double red, const int32_t *cand, const double *wp, int m, double *hg) {
  int rmin = c->smin - p > 1 ? c->smin - p : 1, rmax = c->smax - p < m ? c->smax - p : m;
  if (rmax < rmin) return -INFINITY;
  halves(c, cand, m, c->smax - p, c->hloc);
  for (int a = 0; a < m; a++) for (int r = 0; r <= c->smax - p && r < MAXS; r++) hg[(size_t)cand[a] * MAXS + r] = c->hloc[a * MAXS + r];
  double best = -INFINITY;
  for (int r = rmin; r <= rmax; r++) {
    double val;
    if (r == 2) {
      val = -INFINITY;
      for (int a = 0; a < m; a++) { double ta = wp[a] - c->v[cand[a]]; const uint8_t *okr = c->ok + (size_t)cand[a] * c->n; const int32_t *wr = c->w + (size_t)cand[a] * c->n;
        for (int b = a + 1; b < m; b++) if (okr[cand[b]]) { double x = ta + wp[b] - c->v[cand[b]] + wr[cand[b]]; if (x > val) val = x; } }
    } else {
      for (int a = 0; a < m; a++) c->tmp[a] = wp[a] - c->v[cand[a]] + (r > 1 ? c->hloc[a * MAXS + r] : 0);
      val = topsum(c->tmp, m, r);
    }
    if (red + val > best) best = red + val;
  }
  return best;
}

static void grow(Ctx *c, int p, double red, int depth, int m, uint64_t spoken) {
  int32_t *cand = c->cbuf[depth]; double *wp = c->wbuf[depth];
  c->nodes++;
  if (p >= c->smin && red > c->eps) { if (red > c->best) c->best = red; keep_group(c, p, red); }
  if (p == c->smax || m == 0) return;
  double thr = c->best > c->floor_ ? c->best : c->floor_;
  const double *hpar = depth == 0 ? c->hroot : c->hdep[depth - 1];
  double bound = cheap_bound(c, p, red, cand, wp, m, hpar);
  if (bound <= thr) return;
  double *hg = c->hdep[depth];
  if (m <= LOCAL) { double b2 = local_bound(c, p, red, cand, wp, m, hg); if (b2 < bound) bound = b2; if (bound <= thr) return; }
  else for (int a = 0; a < m; a++) for (int r = 0; r < MAXS; r++) hg[(size_t)cand[a] * MAXS + r] = hpar[(size_t)cand[a] * MAXS + r];
  if (c->nodes > c->budget) { if (bound > c->credit) c->credit = bound; return; }
  double *key = c->kbuf[depth]; int *ord = c->ordbuf[depth]; int32_t *oc = c->obuf[depth]; double *ow = c->owbuf[depth];
  int rr = c->smax - p;
  for (int a = 0; a < m; a++) { key[a] = wp[a] - c->v[cand[a]] + hg[(size_t)cand[a] * MAXS + rr]; ord[a] = a; }
  for (int a = 1; a < m; a++) { int x = ord[a]; int q = a; while (q > 0 && key[ord[q - 1]] < key[x]) { ord[q] = ord[q - 1]; q--; } ord[q] = x; }
  for (int a = 0; a < m; a++) { oc[a] = cand[ord[a]]; ow[a] = wp[ord[a]]; }
  int32_t *nc = c->cbuf[depth + 1]; double *nw = c->wbuf[depth + 1];
  for (int k = 0; k < m; k++) {
    int j = oc[k];
    if (c->dcount[c->dept[j]] >= c->limit) continue;
    uint64_t sp = spoken & c->lang[j];
    c->dcount[c->dept[j]]++;
    const uint8_t *okr = c->ok + (size_t)j * c->n; const int32_t *wr = c->w + (size_t)j * c->n;
    int mm = 0;
    for (int l = k + 1; l < m; l++) { int x = oc[l]; if (okr[x] && (c->lang[x] & sp) && c->dcount[c->dept[x]] < c->limit) { nc[mm] = x; nw[mm] = ow[l] + wr[x]; mm++; } }
    c->members[p] = j;
    grow(c, p + 1, red + ow[k] - c->v[j], depth + 1, mm, sp);
    c->dcount[c->dept[j]]--;
    if (c->nodes > c->budget && c->credit >= bound) break; /* nothing tighter to gain */
  }
}

/* For root i: every valid group whose lowest member (by pos) is i; f = max red (best), credit = bound
   of branches left when the budget ran out. Returns nodes. */
long long price_root(int n, const uint8_t *ok, const int32_t *w, const double *v, const int32_t *dept, int ndept,
                     int limit, const uint64_t *lang, const int32_t *pos, int smin, int smax, int i,
                     long long budget, double eps, double floor_, int keep,
                     double *best, double *credit, int *nkept, int32_t *kg, double *kr) {
  Ctx c; memset(&c, 0, sizeof c);
  c.n = n; c.ok = ok; c.w = w; c.v = v; c.dept = dept; c.limit = limit; c.lang = lang; c.smin = smin; c.smax = smax;
  c.budget = budget; c.eps = eps; c.floor_ = floor_; c.best = -INFINITY; c.credit = -INFINITY; c.keep = keep; c.kg = kg; c.kr = kr;
  c.dcount = (int *)calloc(ndept, sizeof(int));
  for (int d = 0; d <= MAXS; d++) { c.cbuf[d] = (int32_t *)malloc(sizeof(int32_t) * n); c.wbuf[d] = (double *)malloc(sizeof(double) * n); c.hdep[d] = (double *)calloc((size_t)n * MAXS, sizeof(double)); c.obuf[d] = (int32_t *)malloc(sizeof(int32_t) * n); c.owbuf[d] = (double *)malloc(sizeof(double) * n); c.kbuf[d] = (double *)malloc(sizeof(double) * n); c.ordbuf[d] = (int *)malloc(sizeof(int) * n); }
  c.hroot = (double *)calloc((size_t)n * MAXS, sizeof(double)); c.hloc = (double *)malloc(sizeof(double) * (size_t)n * MAXS);
  c.tmp = (double *)malloc(sizeof(double) * n); c.idx = (int *)malloc(sizeof(int) * n);
  int m = 0;
  for (int j = 0; j < n; j++) if (pos[j] > pos[i] && ok[(size_t)i * n + j] && (lang[j] & lang[i]) && !(dept[j] == dept[i] && limit <= 1)) { c.cbuf[0][m] = j; c.wbuf[0][m] = w[(size_t)i * n + j]; m++; }
  /* root halves over the root candidates: an upper bound for every node below */
  { double *h = (double *)malloc(sizeof(double) * (size_t)(m > 0 ? m : 1) * MAXS); halves(&c, c.cbuf[0], m, smax - 1, h);
    for (int a = 0; a < m; a++) for (int r = 0; r < MAXS; r++) c.hroot[(size_t)c.cbuf[0][a] * MAXS + r] = h[a * MAXS + r];
    free(h); }
  c.dcount[dept[i]] = 1; c.members[0] = i;
  grow(&c, 1, -v[i], 0, m, lang[i]);
  *best = c.best; *credit = c.credit; *nkept = c.nkept;
  free(c.dcount); for (int d = 0; d <= MAXS; d++) { free(c.cbuf[d]); free(c.wbuf[d]); free(c.hdep[d]); free(c.obuf[d]); free(c.owbuf[d]); free(c.kbuf[d]); free(c.ordbuf[d]); }
  free(c.hroot); free(c.hloc); free(c.tmp); free(c.idx);
  return c.nodes;
}
