// socialpipe view: draws a run's artifacts over its video, follows the transcript, and draws the
// timeline. Plain browser JavaScript, no library; the data sits in the page (#run-data).
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("run-data").textContent);
  const video = document.getElementById("video");
  const overlay = document.getElementById("overlay");
  const timeline = document.getElementById("timeline");
  const info = data.video;
  const palette = data.palette.map(([r, g, b]) => `rgb(${r},${g},${b})`);
  const colourOf = (index) => palette[((index % palette.length) + palette.length) % palette.length];
  const OFF_SCREEN = "#8a8f98"; // voices linked to no track
  const state = { time: 0, frame: 0, boxesDrawn: 0, selectedVoice: null, ready: false, current: -1 };
  window.socialpipeView = state;

  // ------------------------------------------------------------------ time
  const clock = (t) => {
    const m = Math.floor(t / 60), s = t - 60 * m;
    return `${String(m).padStart(2, "0")}:${s.toFixed(2).padStart(5, "0")}`;
  };
  const shortClock = (t) => clock(t).slice(0, 5);
  const frameAt = (t) => Math.min(info.frame_count - 1, Math.max(0, Math.floor(t * info.fps + 1e-6)));
  const duration = Math.max(info.duration_s, ...data.utterances.map((u) => u.end), 1e-3);
  const hasVideo = !data.missing.some((m) => m.startsWith("the video"));
  let slider = null, manualTime = 0; // without a video, a slider sets the time

  function now() { return hasVideo ? video.currentTime : manualTime; }
  function seek(t) {
    t = Math.max(0, Math.min(duration, t));
    if (hasVideo) { video.currentTime = t; } else { manualTime = t; slider.value = t; update(); }
  }
  state.seek = seek;

  // ------------------------------------------------------------------ indexes
  function lowerBound(array, value) { // first index with array[i] >= value
    let lo = 0, hi = array.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (array[mid] < value) lo = mid + 1; else hi = mid; }
    return lo;
  }
  const starts = data.utterances.map((u) => u.start);
  const longest = data.utterances.reduce((m, u) => Math.max(m, u.end - u.start), 0);
  function speakingAt(t) { // utterances with start <= t < end
    const found = [];
    for (let i = lowerBound(starts, t + 1e-9) - 1; i >= 0 && starts[i] >= t - longest; i--) {
      if (data.utterances[i].end > t) found.push(data.utterances[i]);
    }
    return found;
  }
  const trackOfVoice = new Map(data.links.map((l) => [l.voice, l.track]));
  const tracksOfVoice = new Map(data.links.map((l) => [l.voice, l.tracks || []]));
  const voiceColour = (voice) => { const track = trackOfVoice.get(voice); return track == null ? OFF_SCREEN : colourOf(track); };
  function boxAt(track, frame) {
    const i = lowerBound(track.frames, frame);
    if (i >= track.frames.length || track.frames[i] !== frame) return null;
    return track.boxes.slice(4 * i, 4 * i + 4);
  }

  // ------------------------------------------------------------------ header and missing parts
  document.getElementById("title").textContent =
    `socialpipe run ${data.run}: ${info.file}, ${info.width}x${info.height}, ${info.fps} fps, ${clock(info.duration_s)}`;
  const missingList = document.getElementById("missing");
  for (const text of data.missing) {
    const li = document.createElement("li"); li.textContent = text; missingList.appendChild(li);
  }

  // ------------------------------------------------------------------ overlay
  function drawOverlay() {
    const width = hasVideo ? video.clientWidth : overlay.parentElement.clientWidth;
    const height = Math.round(width * info.height / info.width);
    if (overlay.width !== width || overlay.height !== height) { overlay.width = width; overlay.height = height; }
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, width, height);
    const scale = width / info.width;
    // each voice speaking now marks its main track when that is on screen, else another of its person's tracks;
    // a voice with none on screen is named at the top of the picture
    const visible = new Set(data.tracks.filter((t) => boxAt(t, state.frame)).map((t) => t.id));
    const speakingTracks = new Set(), offScreen = new Set();
    for (const u of speakingAt(state.time)) {
      const main = trackOfVoice.get(u.voice);
      const shown = main != null && visible.has(main) ? main : (tracksOfVoice.get(u.voice) || []).find((t) => visible.has(t));
      if (shown != null) speakingTracks.add(shown); else offScreen.add(u.name);
    }
    const selectedTrack = state.selectedVoice === null ? undefined : trackOfVoice.get(state.selectedVoice);
    let drawn = 0;
    ctx.font = "12px system-ui, sans-serif";
    for (const track of data.tracks) {
      const box = boxAt(track, state.frame);
      if (!box) continue;
      drawn += 1;
      const [x1, y1, x2, y2] = box.map((v) => v * scale);
      const speaking = speakingTracks.has(track.id);
      const colour = colourOf(track.id);
      ctx.lineWidth = speaking || track.id === selectedTrack ? 4 : 2;
      ctx.strokeStyle = colour;
      ctx.setLineDash(track.id === selectedTrack ? [6, 3] : []);
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      ctx.setLineDash([]);
      const label = `${track.id}${track.name ? " " + track.name : ""}${speaking ? " \u25CF speaking" : ""}`;
      const textWidth = ctx.measureText(label).width;
      const left = Math.max(0, Math.min(x1, width - textWidth - 8));  // the tag stays inside the picture
      const top = Math.max(y1 - 18, 0);
      ctx.fillStyle = colour; ctx.fillRect(left, top, textWidth + 8, 18);
      ctx.fillStyle = "#fff"; ctx.fillText(label, left + 4, top + 13);
    }
    overlay.dataset.offScreen = [...offScreen].join(", ");
    if (offScreen.size) {
      const text = `off screen: ${[...offScreen].join(", ")} speaking`;
      ctx.fillStyle = "rgba(0, 0, 0, 0.7)"; ctx.fillRect(4, 4, ctx.measureText(text).width + 12, 20);
      ctx.fillStyle = "#ffe678"; ctx.fillText(text, 10, 18);
    }
    state.boxesDrawn = drawn;
    overlay.dataset.frame = String(state.frame);
    overlay.dataset.boxes = String(drawn);
  }

  // ------------------------------------------------------------------ transcript
  const list = document.getElementById("transcript");
  const rows = data.utterances.map((u, i) => {
    const li = document.createElement("li");
    li.dataset.index = String(i);
    li.dataset.start = String(u.start);
    const when = document.createElement("span");
    when.className = "when"; when.textContent = `${shortClock(u.start)}-${shortClock(u.end)}`;
    const who = document.createElement("span");
    who.className = "who";
    who.innerHTML = `<span class="swatch"></span>`;
    who.firstChild.style.background = voiceColour(u.voice);
    who.append(u.name);
    who.title = u.name;
    const text = document.createElement("span"); text.textContent = u.text || "...";
    li.append(when, who, text);
    return li;
  });
  list.append(...rows);
  list.addEventListener("click", (event) => {
    const li = event.target.closest("li");
    if (li) seek(Number(li.dataset.start) + 1e-3);
  });
  function followTranscript() {
    const speaking = speakingAt(state.time);
    let index = speaking.length ? data.utterances.indexOf(speaking[speaking.length - 1])
      : lowerBound(starts, state.time + 1e-9) - 1;
    if (index === state.current) return;
    if (state.current >= 0) rows[state.current].classList.remove("current");
    state.current = index;
    if (index >= 0) {
      rows[index].classList.add("current");
      const panel = list.parentElement, row = rows[index];
      if (row.offsetTop < panel.scrollTop || row.offsetTop + row.offsetHeight > panel.scrollTop + panel.clientHeight) {
        panel.scrollTop = row.offsetTop - panel.clientHeight / 3;
      }
    }
  }

  // ------------------------------------------------------------------ timeline
  const LANE = 18, GAP = 4, LABEL = 150;
  function voiceLabel(voice) {  // the voice, and the person speaking it when that is another label
    const link = data.links.find((l) => l.voice === voice);
    return link && link.person && link.person !== voice ? `${voice}: ${link.person}` : voice;
  }
  const lanes = [
    ...data.voices.map((voice) => ({ kind: "voice", voice, label: voiceLabel(voice) })),
    ...data.tracks.map((track) => ({ kind: "track", track, label: `track ${track.id}${track.name ? " " + track.name : ""}` })),
  ];
  timeline.dataset.lanes = JSON.stringify(lanes.map((l) => l.kind === "voice" ? `voice:${l.voice}` : `track:${l.track.id}`));
  let timelineImage = null;
  function drawTimelineBase() {
    const width = timeline.clientWidth || 800;
    const height = lanes.length * (LANE + GAP) + 16;
    timeline.width = width; timeline.height = height; timeline.style.height = `${height}px`;
    const ctx = timeline.getContext("2d", { willReadFrequently: true });
    const span = width - LABEL;
    const x = (t) => LABEL + (t / duration) * span;
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, width, height);
    ctx.font = "11px system-ui, sans-serif";
    lanes.forEach((lane, k) => {
      const y = k * (LANE + GAP);
      ctx.fillStyle = "#f0f0ec"; ctx.fillRect(LABEL, y, span, LANE);
      ctx.fillStyle = "#1f2328"; ctx.fillText(lane.label.slice(0, 24), 4, y + 13, LABEL - 8);
      if (lane.kind === "voice") {
        ctx.fillStyle = voiceColour(lane.voice);
        for (const u of data.utterances) {
          if (u.voice === lane.voice) ctx.fillRect(x(u.start), y + 2, Math.max(x(u.end) - x(u.start), 1), LANE - 4);
        }
      } else {
        const track = lane.track, toTime = (f) => f / info.fps;
        if (state.selectedVoice !== null && trackOfVoice.get(state.selectedVoice) === track.id) {
          ctx.strokeStyle = "#0b6bcb"; ctx.lineWidth = 2; ctx.strokeRect(LABEL + 1, y + 1, span - 2, LANE - 2);
        }
        ctx.fillStyle = colourOf(track.id); ctx.globalAlpha = 0.45;
        for (const [a, b] of track.spans) ctx.fillRect(x(toTime(a)), y + 4, Math.max(x(toTime(b + 1)) - x(toTime(a)), 1), LANE - 8);
        ctx.globalAlpha = 1;
        if (track.scores) { // speaking score in [0, 1] as a curve over the lane
          ctx.strokeStyle = "#111"; ctx.lineWidth = 1; ctx.beginPath();
          track.scores.forEach(([f, s], i) => {
            const px = x(toTime(f)), py = y + LANE - 2 - Math.max(0, Math.min(1, s)) * (LANE - 4);
            if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
          });
          ctx.stroke();
        }
      }
    });
    // overlapping speech: where two or more voices talk at once, a dark tick under the voice lanes
    const overlaps = [];
    const sorted = [...data.utterances].sort((a, b) => a.start - b.start);
    let reach = -1, reachVoice = null;
    for (const u of sorted) {
      if (u.start < reach && u.voice !== reachVoice) overlaps.push([u.start, Math.min(u.end, reach)]);
      if (u.end > reach) { reach = u.end; reachVoice = u.voice; }
    }
    const yOverlap = data.voices.length * (LANE + GAP) - GAP + 1;
    ctx.fillStyle = "#b91c1c";
    for (const [a, b] of overlaps) ctx.fillRect(x(a), yOverlap, Math.max(x(b) - x(a), 1), 2);
    // shot cuts
    ctx.strokeStyle = "#111"; ctx.setLineDash([2, 2]);
    for (const [first] of data.shots) {
      if (first > 0) { ctx.beginPath(); ctx.moveTo(x(first / info.fps), 0); ctx.lineTo(x(first / info.fps), height - 16); ctx.stroke(); }
    }
    ctx.setLineDash([]);
    ctx.fillStyle = "#6b7280";
    // ticks on round times: the smallest step of 1, 2, 5, 10, 15, 30 s, 1, 2, 5, 10, 15, 30 min ... giving at most 10
    const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
    const step = steps.find((s) => duration / s <= 10) ?? Math.ceil(duration / 36000) * 3600;
    for (let t = 0; t <= duration + 1e-6; t += step) ctx.fillText(shortClock(t), Math.min(x(t), width - 34), height - 3);
    timelineImage = ctx.getImageData(0, 0, width, height);
  }
  function drawPlayhead() {
    if (!timelineImage) return;
    const ctx = timeline.getContext("2d", { willReadFrequently: true });
    ctx.putImageData(timelineImage, 0, 0);
    const px = LABEL + (state.time / duration) * (timeline.width - LABEL);
    ctx.strokeStyle = "#0b6bcb"; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.moveTo(px, 0); ctx.lineTo(px, timeline.height - 14); ctx.stroke();
  }
  timeline.addEventListener("click", (event) => {
    const rect = timeline.getBoundingClientRect();
    const px = (event.clientX - rect.left) * (timeline.width / rect.width);
    if (px >= LABEL) seek(((px - LABEL) / (timeline.width - LABEL)) * duration);
  });

  // ------------------------------------------------------------------ links
  const links = document.getElementById("links");
  if (!data.links.length) links.innerHTML = `<li class="note">no links (the link stage has not run)</li>`;
  for (const link of data.links) {
    const li = document.createElement("li");
    li.dataset.voice = link.voice;
    const head = document.createElement("div");
    head.innerHTML = `<span class="swatch"></span><b></b> <span class="target"></span>`;
    head.querySelector(".swatch").style.background = voiceColour(link.voice);
    head.querySelector("b").textContent = link.person && link.person !== link.voice ? `${link.person} (${link.voice})` : link.voice;
    head.querySelector(".target").textContent = link.track === null
      ? `off screen, confidence ${Math.round(link.confidence * 100)}%`
      : `-> track ${link.track}, confidence ${Math.round(link.confidence * 100)}%`;
    li.appendChild(head);
    if (link.decision) { const d = document.createElement("div"); d.className = "note"; d.textContent = link.decision; li.appendChild(d); }
    if (link.evidence) { const e = document.createElement("div"); e.className = "note evidence"; e.textContent = link.evidence; li.appendChild(e); }
    const candidates = Object.entries(link.candidates || {});
    if (candidates.length) {
      const more = document.createElement("details");
      const title = document.createElement("summary");
      title.textContent = "the numbers (per candidate track: 25 steps a second; shares 0-1)";
      more.appendChild(title);
      // every string from an artifact reaches the page as text, never as markup
      const table = document.createElement("table");
      const keys = Object.keys(candidates[0][1] || {}).slice(0, 4);
      const row = (tag, cells) => {
        const tr = document.createElement("tr");
        for (const cell of cells) { const td = document.createElement(tag); td.textContent = cell; tr.appendChild(td); }
        return tr;
      };
      table.appendChild(row("th", ["track", ...keys.map((k) => String(k).replace(/_/g, " "))]));
      for (const [track, values] of candidates) {
        const cells = keys.map((k) => {
          const value = values && typeof values === "object" ? values[k] : undefined;
          return typeof value === "number" ? (Number.isInteger(value) ? String(value) : value.toFixed(2)) : value === undefined || value === null ? "-" : String(value);
        });
        table.appendChild(row("td", [String(track), ...cells]));
      }
      more.appendChild(table);
      li.appendChild(more);
    }
    li.addEventListener("click", () => {
      state.selectedVoice = state.selectedVoice === link.voice ? null : link.voice;
      for (const other of links.children) other.classList.toggle("selected", other.dataset.voice === state.selectedVoice);
      drawTimelineBase();
      update();
    });
    links.appendChild(li);
  }

  // ------------------------------------------------------------------ answer
  const answer = document.getElementById("answer");
  if (!data.answer) {
    answer.innerHTML = `<p class="note">No answer in this run: ask one with socialpipe run VIDEO --question "...".</p>`;
  } else {
    const a = data.answer;
    const q = document.createElement("div"); q.className = "question"; q.textContent = `Q: ${a.question}`;
    const r = document.createElement("div"); r.className = "reply"; r.textContent = `A: ${a.text}`;
    const meta = document.createElement("div"); meta.className = "note";
    meta.textContent = `${a.model ?? ""} · variant ${a.variant ?? "?"}`;
    answer.append(q, r, meta);
    if (a.scores) {
      const low = Math.min(...a.scores), high = Math.max(...a.scores);
      a.options.forEach((option, i) => {
        const row = document.createElement("div");
        row.className = "option" + (i === a.chosen ? " chosen" : "");
        const label = document.createElement("div"); label.textContent = `${String.fromCharCode(65 + i)}. ${option}`;
        const bar = document.createElement("div"); bar.className = "bar";
        bar.style.width = `${high > low ? 15 + 85 * (a.scores[i] - low) / (high - low) : 100}%`;
        bar.title = a.scores[i].toFixed(3);
        row.append(label, bar);
        answer.appendChild(row);
      });
    }
    if (a.alignment && "attn_max_before" in a.alignment) {
      const d = document.createElement("div"); d.className = "note";
      d.textContent = `AttnMax ${a.alignment.attn_max_before.toPrecision(3)} -> ${a.alignment.attn_max_after.toPrecision(3)}, ` +
        `AttnMean ${a.alignment.attn_mean_before.toPrecision(3)} -> ${a.alignment.attn_mean_after.toPrecision(3)}`;
      answer.appendChild(d);
    }
    if (data.heatmap_src) {
      const caption = document.createElement("div"); caption.className = "note";
      caption.textContent = `Attention of ${a.heatmap_speaker ?? "a speaker"} over the frames: without the bias (top), with it (bottom)`;
      const img = document.createElement("img"); img.src = data.heatmap_src; img.alt = "attention heatmaps";
      const full = document.createElement("a"); full.href = data.heatmap_src; full.target = "_blank";
      full.title = "open at full size"; full.appendChild(img);
      answer.append(caption, full);
    }
  }

  // ------------------------------------------------------------------ the loop
  function update() {
    state.time = now();
    state.frame = frameAt(state.time);
    document.getElementById("time").textContent = clock(state.time);
    document.getElementById("frame").textContent = `frame ${state.frame}`;
    drawOverlay();
    followTranscript();
    drawPlayhead();
  }
  function loop() {
    update();
    if (!video.paused && !video.ended) requestAnimationFrame(loop);
  }
  if (hasVideo) {
    video.src = data.video_src;
    for (const name of ["seeked", "loadeddata", "pause", "timeupdate"]) video.addEventListener(name, update);
    video.addEventListener("play", () => requestAnimationFrame(loop));
  } else {
    video.hidden = true;
    document.getElementById("novideo").hidden = false;
    slider = document.createElement("input");
    Object.assign(slider, { type: "range", min: 0, max: duration, step: 1 / info.fps, value: 0 });
    slider.style.width = "100%";
    slider.addEventListener("input", () => { manualTime = Number(slider.value); update(); });
    document.getElementById("player").appendChild(slider);
  }
  window.addEventListener("resize", () => { drawTimelineBase(); update(); });
  drawTimelineBase();
  update();
  state.readyMs = performance.now(); // since the navigation started
  state.ready = true;
})();
