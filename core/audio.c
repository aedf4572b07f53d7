/* Audio input through FFmpeg: any container/codec libavformat + libavcodec decode, any sample
 * rate and channel layout -> mono f32 at the requested rate (16 kHz) with libswresample.
 *
 * Streaming: mmp_audio_read() pulls one packet at a time (av_read_frame ->
 * avcodec_send_packet / avcodec_receive_frame -> swr_convert) and keeps only the samples of
 * the last decoded frame, so memory does not grow with the file's length.
 *
 * Mono: channels are averaged (a custom swr matrix of 1/n), which is what `ffmpeg -ac 1` gives
 * for integer output and what librosa.to_mono does. swr's own default for float output would
 * be (L+R)/sqrt(2).
 *
 * API: FFmpeg 5.x/6.x (AVChannelLayout, swr_alloc_set_opts2, send/receive). */
#include "mmpipe/audio.h"
#include "util.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>

#define AUDIO_IO_BUF 32768
/* Consecutive packets the decoder may reject before the file is called corrupt (a few bad
 * packets in a long stream are skipped, as the ffmpeg CLI does). */
#define AUDIO_MAX_BAD_PACKETS 64
/* A decoded frame larger than this many samples per channel is not audio we accept. */
#define AUDIO_MAX_FRAME_SAMPLES (1 << 22)

struct mmp_audio_reader {
    char *name;                 /* for messages */
    AVFormatContext *fmt;
    AVIOContext *avio;          /* memory input only */
    const uint8_t *mem;
    size_t mem_size, mem_pos;
    AVCodecContext *dec;
    SwrContext *swr;
    AVPacket *pkt;
    AVFrame *frm;
    int stream;
    int out_rate;
    /* what swr was configured for */
    int swr_rate, swr_fmt;
    AVChannelLayout swr_layout;
    /* converted samples not yet returned: buf[pos .. n) */
    float *buf;
    int64_t buf_n, buf_pos, buf_cap;
    int64_t n_out;
    int bad_packets;
    bool demux_eof, dec_eof, done;
};

void mmp_audio_quiet_ffmpeg(void) { av_log_set_level(AV_LOG_QUIET); }

static const char *av_err(int e, char *buf, size_t n) {
    if (av_strerror(e, buf, n) < 0) snprintf(buf, n, "error %d", e);
    return buf;
}

/* ---- memory input ---- */
static int mem_read(void *opaque, uint8_t *buf, int size) {
    mmp_audio_reader *r = opaque;
    if (r->mem_pos >= r->mem_size) return AVERROR_EOF;
    size_t n = MMP_MIN((size_t)size, r->mem_size - r->mem_pos);
    memcpy(buf, r->mem + r->mem_pos, n);
    r->mem_pos += n;
    return (int)n;
}

static int64_t mem_seek(void *opaque, int64_t offset, int whence) {
    mmp_audio_reader *r = opaque;
    int64_t base;
    switch (whence & ~AVSEEK_FORCE) {
    case AVSEEK_SIZE: return (int64_t)r->mem_size;
    case SEEK_SET: base = 0; break;
    case SEEK_CUR: base = (int64_t)r->mem_pos; break;
    case SEEK_END: base = (int64_t)r->mem_size; break;
    default: return AVERROR(EINVAL);
    }
    int64_t p;
    if (__builtin_add_overflow(base, offset, &p) || p < 0 || p > (int64_t)r->mem_size) return AVERROR(EINVAL);
    r->mem_pos = (size_t)p;
    return p;
}

void mmp_audio_close(mmp_audio_reader *r) {
    if (!r) return;
    av_frame_free(&r->frm);
    av_packet_free(&r->pkt);
    swr_free(&r->swr);
    av_channel_layout_uninit(&r->swr_layout);
    avcodec_free_context(&r->dec);
    avformat_close_input(&r->fmt);
    if (r->avio) {
        av_freep(&r->avio->buffer);
        avio_context_free(&r->avio);
    }
    free(r->buf);
    free(r->name);
    free(r);
}

/* (Re)configure swr for the frame's format, rate and layout -> mono f32 at out_rate. */
static enum mmp_status setup_swr(mmp_audio_reader *r, int fmt, int rate, const AVChannelLayout *layout) {
    char eb[128];
    int nch = layout->nb_channels;
    if (rate < MMP_AUDIO_MIN_RATE || rate > MMP_AUDIO_MAX_RATE)
        return mmp__error(MMP_ERR_UNSUPPORTED, "%s: sample rate %d Hz is outside [%d, %d]", r->name, rate,
                          MMP_AUDIO_MIN_RATE, MMP_AUDIO_MAX_RATE);
    if (nch < 1 || nch > MMP_AUDIO_MAX_CHANNELS)
        return mmp__error(MMP_ERR_UNSUPPORTED, "%s: %d channels (1..%d supported)", r->name, nch, MMP_AUDIO_MAX_CHANNELS);
    swr_free(&r->swr);
    av_channel_layout_uninit(&r->swr_layout);
    AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
    /* an unspecified layout (raw PCM in some containers) is given the default for its count */
    AVChannelLayout in;
    if (layout->order == AV_CHANNEL_ORDER_UNSPEC) av_channel_layout_default(&in, nch);
    else if (av_channel_layout_copy(&in, layout) < 0) return mmp__error(MMP_ERR_NOMEM, "%s: channel layout", r->name);
    int e = swr_alloc_set_opts2(&r->swr, &mono, AV_SAMPLE_FMT_FLT, r->out_rate, &in, (enum AVSampleFormat)fmt, rate, 0, NULL);
    enum mmp_status st = MMP_OK;
    if (e < 0 || !r->swr) {
        st = mmp__error(MMP_ERR_UNSUPPORTED, "%s: cannot convert %d Hz %d-channel %s audio: %s", r->name, rate, nch,
                        av_get_sample_fmt_name((enum AVSampleFormat)fmt) ? av_get_sample_fmt_name((enum AVSampleFormat)fmt) : "?",
                        av_err(e, eb, sizeof eb));
        goto out;
    }
    /* average the channels: matrix [1 out][nch in] */
    double mat[MMP_AUDIO_MAX_CHANNELS];
    for (int i = 0; i < nch; i++) mat[i] = 1.0 / nch;
    if (nch > 1 && (e = swr_set_matrix(r->swr, mat, nch)) < 0) {
        st = mmp__error(MMP_ERR_INTERNAL, "%s: swr_set_matrix: %s", r->name, av_err(e, eb, sizeof eb));
        goto out;
    }
    if ((e = swr_init(r->swr)) < 0) {
        st = mmp__error(MMP_ERR_UNSUPPORTED, "%s: swr_init (%d Hz, %d channels): %s", r->name, rate, nch, av_err(e, eb, sizeof eb));
        goto out;
    }
    r->swr_rate = rate;
    r->swr_fmt = fmt;
    if (av_channel_layout_copy(&r->swr_layout, layout) < 0) st = mmp__error(MMP_ERR_NOMEM, "%s: channel layout", r->name);
out:
    av_channel_layout_uninit(&in);
    if (st != MMP_OK) swr_free(&r->swr);
    return st;
}

/* Errors set *status (the message names the file). */
static mmp_audio_reader *open_common(mmp_audio_reader *r, const char *url, int sample_rate, enum mmp_status *status) {
    char eb[128];
    int e;
    enum mmp_status st = MMP_OK;
#define FAIL(code, ...) do { st = mmp__error((code), __VA_ARGS__); goto fail; } while (0)
    if (sample_rate == 0) sample_rate = MMP_AUDIO_SAMPLE_RATE;
    if (sample_rate < MMP_AUDIO_MIN_RATE || sample_rate > MMP_AUDIO_MAX_RATE) {
        FAIL(MMP_ERR_INVALID_ARG, "%s: requested output rate %d Hz is outside [%d, %d]", r->name, sample_rate,
             MMP_AUDIO_MIN_RATE, MMP_AUDIO_MAX_RATE);
    }
    r->out_rate = sample_rate;
    AVDictionary *opt = NULL;
    if (!r->avio) av_dict_set(&opt, "protocol_whitelist", "file,pipe", 0);
    e = avformat_open_input(&r->fmt, url, NULL, &opt);
    av_dict_free(&opt);
    if (e < 0) {
        FAIL(e == AVERROR_INVALIDDATA ? MMP_ERR_FORMAT : MMP_ERR_IO, "%s: not a readable audio file: %s", r->name,
                   av_err(e, eb, sizeof eb));
    }
    if ((e = avformat_find_stream_info(r->fmt, NULL)) < 0) {
        FAIL(MMP_ERR_FORMAT, "%s: cannot read stream info: %s", r->name, av_err(e, eb, sizeof eb));
    }
    const AVCodec *codec = NULL;
    r->stream = av_find_best_stream(r->fmt, AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
    if (r->stream < 0 || !codec) {
        FAIL(r->stream == AVERROR_DECODER_NOT_FOUND ? MMP_ERR_UNSUPPORTED : MMP_ERR_FORMAT,
                   "%s: %s (container '%s')", r->name,
                   r->stream == AVERROR_DECODER_NOT_FOUND ? "no decoder for its audio stream" : "no audio stream",
                   r->fmt->iformat ? r->fmt->iformat->name : "?");
    }
    AVCodecParameters *par = r->fmt->streams[r->stream]->codecpar;
    if (par->sample_rate < MMP_AUDIO_MIN_RATE || par->sample_rate > MMP_AUDIO_MAX_RATE) {
        FAIL(MMP_ERR_UNSUPPORTED, "%s: sample rate %d Hz is outside [%d, %d]", r->name, par->sample_rate,
                   MMP_AUDIO_MIN_RATE, MMP_AUDIO_MAX_RATE);
    }
    if (par->ch_layout.nb_channels < 1 || par->ch_layout.nb_channels > MMP_AUDIO_MAX_CHANNELS) {
        FAIL(MMP_ERR_UNSUPPORTED, "%s: %d audio channels (1..%d supported)", r->name, par->ch_layout.nb_channels,
                   MMP_AUDIO_MAX_CHANNELS);
    }
    if (!(r->dec = avcodec_alloc_context3(codec)) || avcodec_parameters_to_context(r->dec, par) < 0) {
        FAIL(MMP_ERR_NOMEM, "%s: cannot set up the %s decoder", r->name, codec->name);
    }
    r->dec->thread_count = 1;  /* the library's threads are its callers' business */
    if ((e = avcodec_open2(r->dec, codec, NULL)) < 0) {
        FAIL(MMP_ERR_UNSUPPORTED, "%s: cannot open the %s decoder: %s", r->name, codec->name, av_err(e, eb, sizeof eb));
    }
    if (!(r->pkt = av_packet_alloc()) || !(r->frm = av_frame_alloc())) {
        FAIL(MMP_ERR_NOMEM, "%s: out of memory", r->name);
    }
    *status = MMP_OK;
    return r;
fail:
#undef FAIL
    *status = st;
    mmp_audio_close(r);
    return NULL;
}

static mmp_audio_reader *open_path(const char *path, int sample_rate, enum mmp_status *status) {
    *status = MMP_ERR_IO;
    if (!path) {
        *status = MMP_ERR_INVALID_ARG;
        return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_audio_open: path is NULL");
    }
    struct stat sb;
    if (stat(path, &sb) != 0)
        return mmp__error_null(MMP_ERR_IO, "%s: cannot open audio file: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return mmp__error_null(MMP_ERR_IO, "%s: is a directory, not an audio file", path);
    *status = MMP_ERR_NOMEM;
    mmp_audio_reader *r = mmp__calloc(1, sizeof *r);
    if (!r) return NULL;
    /* "file:" keeps a path like "http://x" or "concat:a|b" from being read as a protocol */
    size_t n = strlen(path);
    char *url = mmp__malloc(n + 6);
    if (!url || !(r->name = mmp__strdup(path))) {
        free(url);
        mmp_audio_close(r);
        return NULL;
    }
    memcpy(url, "file:", 5);
    memcpy(url + 5, path, n + 1);
    r = open_common(r, url, sample_rate, status);
    free(url);
    return r;
}

mmp_audio_reader *mmp_audio_open(const char *path, int sample_rate) {
    enum mmp_status st;
    return open_path(path, sample_rate, &st);
}

static mmp_audio_reader *open_mem(const void *data, size_t size, const char *name, int sample_rate,
                                  enum mmp_status *status) {
    *status = MMP_ERR_INVALID_ARG;
    if (!data && size) return mmp__error_null(MMP_ERR_INVALID_ARG, "mmp_audio_open_memory: data is NULL");
    const char *nm = name ? name : "<memory>";
    *status = MMP_ERR_FORMAT;
    if (size == 0) return mmp__error_null(MMP_ERR_FORMAT, "%s: empty (0 bytes), not an audio file", nm);
    *status = MMP_ERR_NOMEM;
    mmp_audio_reader *r = mmp__calloc(1, sizeof *r);
    if (!r) return NULL;
    if (!(r->name = mmp__strdup(nm))) goto fail;
    r->mem = data;
    r->mem_size = size;
    uint8_t *iobuf = av_malloc(AUDIO_IO_BUF);
    if (!iobuf) { mmp__error(MMP_ERR_NOMEM, "%s: out of memory", nm); goto fail; }
    r->avio = avio_alloc_context(iobuf, AUDIO_IO_BUF, 0, r, mem_read, NULL, mem_seek);
    if (!r->avio) { av_free(iobuf); mmp__error(MMP_ERR_NOMEM, "%s: out of memory", nm); goto fail; }
    if (!(r->fmt = avformat_alloc_context())) { mmp__error(MMP_ERR_NOMEM, "%s: out of memory", nm); goto fail; }
    r->fmt->pb = r->avio;
    r->fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    return open_common(r, "", sample_rate, status);
fail:
    mmp_audio_close(r);
    return NULL;
}

mmp_audio_reader *mmp_audio_open_memory(const void *data, size_t size, const char *name, int sample_rate) {
    enum mmp_status st;
    return open_mem(data, size, name, sample_rate, &st);
}

mmp_audio_info mmp_audio_get_info(const mmp_audio_reader *r) {
    mmp_audio_info info = {0};
    info.duration_s = -1;
    if (!r) return info;
    const AVStream *s = r->fmt->streams[r->stream];
    info.src_sample_rate = s->codecpar->sample_rate;
    info.src_channels = s->codecpar->ch_layout.nb_channels;
    info.sample_rate = r->out_rate;
    if (s->duration != AV_NOPTS_VALUE && s->duration > 0) info.duration_s = (double)s->duration * av_q2d(s->time_base);
    else if (r->fmt->duration != AV_NOPTS_VALUE && r->fmt->duration > 0) info.duration_s = (double)r->fmt->duration / AV_TIME_BASE;
    info.codec = r->dec->codec ? r->dec->codec->name : "?";
    info.container = r->fmt->iformat ? r->fmt->iformat->name : "?";
    return info;
}

int64_t mmp_audio_position(const mmp_audio_reader *r) { return r ? r->n_out : 0; }

static enum mmp_status grow_buf(mmp_audio_reader *r, int64_t need) {
    if (need <= r->buf_cap) return MMP_OK;
    int64_t cap = MMP_MAX(need, 4096);
    float *b = realloc(r->buf, (size_t)cap * sizeof(float));
    if (!b) return mmp__error(MMP_ERR_NOMEM, "%s: out of memory (%lld samples)", r->name, (long long)cap);
    r->buf = b;
    r->buf_cap = cap;
    return MMP_OK;
}

/* Convert the decoded frame (or, with frm NULL, flush swr) into buf. */
static enum mmp_status convert(mmp_audio_reader *r, AVFrame *frm) {
    char eb[128];
    enum mmp_status st;
    if (frm) {
        if (frm->nb_samples <= 0) return MMP_OK;
        if (frm->nb_samples > AUDIO_MAX_FRAME_SAMPLES)
            return mmp__error(MMP_ERR_FORMAT, "%s: decoded frame of %d samples", r->name, frm->nb_samples);
        /* the format may change mid-stream (rare: chained ogg, broken files): reconfigure. The
         * few samples of resampler delay of the previous configuration are dropped. */
        if (!r->swr || frm->sample_rate != r->swr_rate || frm->format != r->swr_fmt ||
            av_channel_layout_compare(&frm->ch_layout, &r->swr_layout) != 0) {
            if ((st = setup_swr(r, frm->format, frm->sample_rate, &frm->ch_layout)) != MMP_OK) return st;
        }
    } else if (!r->swr) {
        return MMP_OK;
    }
    int cap = swr_get_out_samples(r->swr, frm ? frm->nb_samples : 0);
    if (cap < 0) return mmp__error(MMP_ERR_INTERNAL, "%s: swr_get_out_samples: %s", r->name, av_err(cap, eb, sizeof eb));
    if ((st = grow_buf(r, cap + 16)) != MMP_OK) return st;
    uint8_t *outp = (uint8_t *)r->buf;
    int n = swr_convert(r->swr, &outp, cap + 16, frm ? (const uint8_t **)frm->extended_data : NULL, frm ? frm->nb_samples : 0);
    if (n < 0) return mmp__error(MMP_ERR_FORMAT, "%s: resampling failed: %s", r->name, av_err(n, eb, sizeof eb));
    r->buf_n = n;
    r->buf_pos = 0;
    return MMP_OK;
}

/* Produce the next batch of samples into buf; sets r->done at the end. */
static enum mmp_status refill(mmp_audio_reader *r) {
    char eb[128];
    for (;;) {
        if (r->dec_eof) {
            enum mmp_status st = convert(r, NULL);  /* resampler tail */
            r->done = true;
            return st;
        }
        int e = avcodec_receive_frame(r->dec, r->frm);
        if (e == 0) {
            enum mmp_status st = convert(r, r->frm);
            av_frame_unref(r->frm);
            if (st != MMP_OK) return st;
            if (r->buf_n > 0) return MMP_OK;
            continue;
        }
        if (e == AVERROR_EOF) { r->dec_eof = true; continue; }
        if (e != AVERROR(EAGAIN)) {
            /* a frame the decoder could not finish: skip it like the ffmpeg CLI, up to a limit */
            if (++r->bad_packets > AUDIO_MAX_BAD_PACKETS)
                return mmp__error(MMP_ERR_FORMAT, "%s: corrupt audio data (%s)", r->name, av_err(e, eb, sizeof eb));
            continue;
        }
        /* the decoder wants input */
        if (r->demux_eof) { r->dec_eof = true; continue; }  /* should not happen after the flush */
        e = av_read_frame(r->fmt, r->pkt);
        if (e < 0) {
            /* end of file, or a read error / truncation: drain what the decoder holds */
            if (e != AVERROR_EOF && r->n_out == 0 && r->buf_n == 0 && e != AVERROR_INVALIDDATA && e != AVERROR(EIO))
                return mmp__error(MMP_ERR_IO, "%s: read error: %s", r->name, av_err(e, eb, sizeof eb));
            r->demux_eof = true;
            avcodec_send_packet(r->dec, NULL);
            continue;
        }
        if (r->pkt->stream_index != r->stream) { av_packet_unref(r->pkt); continue; }
        e = avcodec_send_packet(r->dec, r->pkt);
        av_packet_unref(r->pkt);
        if (e < 0 && e != AVERROR(EAGAIN)) {
            if (e == AVERROR(ENOMEM)) return mmp__error(MMP_ERR_NOMEM, "%s: decoder out of memory", r->name);
            if (++r->bad_packets > AUDIO_MAX_BAD_PACKETS)
                return mmp__error(MMP_ERR_FORMAT, "%s: corrupt audio data (%s)", r->name, av_err(e, eb, sizeof eb));
        } else if (e == 0) {
            r->bad_packets = 0;
        }
    }
}

enum mmp_status mmp_audio_read(mmp_audio_reader *r, float *out, int64_t max, int64_t *n_read) {
    if (n_read) *n_read = 0;
    if (!r || !n_read || (!out && max > 0) || max < 0)
        return mmp__error(MMP_ERR_INVALID_ARG, "mmp_audio_read: bad arguments");
    int64_t got = 0;
    while (got < max) {
        if (r->buf_pos < r->buf_n) {
            int64_t k = MMP_MIN(max - got, r->buf_n - r->buf_pos);
            memcpy(out + got, r->buf + r->buf_pos, (size_t)k * sizeof(float));
            r->buf_pos += k;
            got += k;
            continue;
        }
        if (r->done) break;
        r->buf_n = r->buf_pos = 0;
        enum mmp_status st = refill(r);
        if (st != MMP_OK) {
            r->done = true;
            return st;
        }
    }
    r->n_out += got;
    *n_read = got;
    if (got == 0 && r->n_out == 0 && max > 0)
        return mmp__error(MMP_ERR_FORMAT, "%s: contains no audio samples (zero-length audio)", r->name);
    return MMP_OK;
}

/* ---- whole files ---- */

static enum mmp_status decode_all(mmp_audio_reader *r, double max_seconds, float **samples, int64_t *n_samples,
                                  bool *truncated) {
    enum mmp_status st = MMP_OK;
    double lim = max_seconds * r->out_rate;
    int64_t max_n = lim > 9e15 ? INT64_MAX / 8 : (int64_t)lim;
    if (!(max_seconds > 0) || max_n < 1) {
        mmp_audio_close(r);
        return mmp__error(MMP_ERR_INVALID_ARG, "mmp_audio_decode: max_seconds must be > 0 (got %g)", max_seconds);
    }
    int64_t cap = 0, n = 0;
    float *buf = NULL;
    for (;;) {
        if (n == cap) {
            if (n >= max_n) {
                /* full: one more sample tells whether the audio goes on */
                float extra;
                int64_t k = 0;
                st = mmp_audio_read(r, &extra, 1, &k);
                if (truncated) *truncated = k > 0;
                break;
            }
            int64_t nc = MMP_MIN(max_n, MMP_MAX(cap * 2, (int64_t)r->out_rate * 4));
            float *b = realloc(buf, (size_t)nc * sizeof(float));
            if (!b) { st = mmp__error(MMP_ERR_NOMEM, "%s: out of memory (%lld samples)", r->name, (long long)nc); break; }
            buf = b;
            cap = nc;
        }
        int64_t k = 0;
        st = mmp_audio_read(r, buf + n, cap - n, &k);
        if (st != MMP_OK || k == 0) break;
        n += k;
    }
    mmp_audio_close(r);
    if (st != MMP_OK) {
        free(buf);
        return st;
    }
    *samples = buf;
    *n_samples = n;
    return MMP_OK;
}

enum mmp_status mmp_audio_decode_file(const char *path, double max_seconds, float **samples, int64_t *n_samples,
                                      bool *truncated) {
    if (!samples || !n_samples) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_audio_decode_file: NULL output");
    *samples = NULL;
    *n_samples = 0;
    if (truncated) *truncated = false;
    enum mmp_status ost;
    mmp_audio_reader *r = open_path(path, 0, &ost);
    if (!r) return ost;
    return decode_all(r, max_seconds, samples, n_samples, truncated);
}

enum mmp_status mmp_audio_decode_memory(const void *data, size_t size, const char *name, double max_seconds,
                                        float **samples, int64_t *n_samples, bool *truncated) {
    if (!samples || !n_samples) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_audio_decode_memory: NULL output");
    *samples = NULL;
    *n_samples = 0;
    if (truncated) *truncated = false;
    enum mmp_status ost;
    mmp_audio_reader *r = open_mem(data, size, name, 0, &ost);
    if (!r) return ost;
    return decode_all(r, max_seconds, samples, n_samples, truncated);
}

enum mmp_status mmp_audio_from_pcm(const float *pcm, int64_t n_frames, int channels, int sample_rate, float **out,
                                   int64_t *n_out) {
    char eb[128];
    if (!out || !n_out) return mmp__error(MMP_ERR_INVALID_ARG, "mmp_audio_from_pcm: NULL output");
    *out = NULL;
    *n_out = 0;
    if (!pcm || n_frames <= 0)
        return mmp__error(MMP_ERR_INVALID_ARG, "mmp_audio_from_pcm: no samples (n_frames %lld)", (long long)n_frames);
    if (channels < 1 || channels > MMP_AUDIO_MAX_CHANNELS)
        return mmp__error(MMP_ERR_INVALID_ARG, "mmp_audio_from_pcm: %d channels (1..%d)", channels, MMP_AUDIO_MAX_CHANNELS);
    if (sample_rate < MMP_AUDIO_MIN_RATE || sample_rate > MMP_AUDIO_MAX_RATE)
        return mmp__error(MMP_ERR_INVALID_ARG, "mmp_audio_from_pcm: sample rate %d Hz is outside [%d, %d]", sample_rate,
                          MMP_AUDIO_MIN_RATE, MMP_AUDIO_MAX_RATE);
    if (n_frames > INT32_MAX / channels)
        return mmp__error(MMP_ERR_LIMIT, "mmp_audio_from_pcm: %lld frames is too many for one call", (long long)n_frames);
    mmp_audio_reader tmp = {0};
    tmp.name = (char *)"<pcm>";
    tmp.out_rate = MMP_AUDIO_SAMPLE_RATE;
    AVChannelLayout lay;
    av_channel_layout_default(&lay, channels);
    enum mmp_status st = setup_swr(&tmp, AV_SAMPLE_FMT_FLT, sample_rate, &lay);
    av_channel_layout_uninit(&lay);
    if (st != MMP_OK) {
        av_channel_layout_uninit(&tmp.swr_layout);
        return st;
    }
    /* output length: n * out/in plus the resampler's delay that the flush returns */
    int64_t cap = swr_get_out_samples(tmp.swr, (int)n_frames) + 64;
    float *buf = cap > 0 ? mmp__malloc((size_t)cap * sizeof(float)) : NULL;
    if (!buf) {
        swr_free(&tmp.swr);
        av_channel_layout_uninit(&tmp.swr_layout);
        return cap > 0 ? MMP_ERR_NOMEM : mmp__error(MMP_ERR_INTERNAL, "mmp_audio_from_pcm: swr_get_out_samples");
    }
    const uint8_t *in = (const uint8_t *)pcm;
    uint8_t *op = (uint8_t *)buf;
    int a = swr_convert(tmp.swr, &op, (int)cap, &in, (int)n_frames);
    int b = 0;
    if (a >= 0) {
        op = (uint8_t *)(buf + a);
        b = swr_convert(tmp.swr, &op, (int)(cap - a), NULL, 0);
    }
    swr_free(&tmp.swr);
    av_channel_layout_uninit(&tmp.swr_layout);
    if (a < 0 || b < 0) {
        free(buf);
        return mmp__error(MMP_ERR_INTERNAL, "mmp_audio_from_pcm: resampling failed: %s", av_err(a < 0 ? a : b, eb, sizeof eb));
    }
    *out = buf;
    *n_out = a + b;
    return MMP_OK;
}
