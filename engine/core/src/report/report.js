// The run report's drawing (engine/core/src/report/html.rs embeds it): everything is drawn
// from the JSON in #run-data; SVG is written as markup, which the HTML parser places in the
// SVG namespace without a namespace URL.
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('run-data').textContent);
  var root = document.getElementById('report');
  var PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

  function esc(s) {
    return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
  }
  function fmt(v) {
    if (typeof v !== 'number' || !isFinite(v)) { return String(v); }
    if (v === 0) { return '0'; }
    var a = Math.abs(v);
    if (a >= 1e4 || a < 1e-2) { return v.toExponential(2); }
    return String(Number(v.toFixed(3)));
  }
  function isNum(v) { return typeof v === 'number' && isFinite(v); }

  // White to dark blue by t in [0, 1].
  function color(t) {
    t = isNum(t) ? Math.min(1, Math.max(0, t)) : 0;
    function lerp(a, b) { return Math.round(a + (b - a) * t); }
    return 'rgb(' + lerp(247, 8) + ',' + lerp(251, 48) + ',' + lerp(255, 107) + ')';
  }

  // A line chart of several series ({name, points: [[x, y]]}) on shared axes.
  function lineChart(title, xLabel, series) {
    var w = 640, h = 320, left = 64, right = 170, top = 28, bottom = 40;
    var pw = w - left - right, ph = h - top - bottom;
    var x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    series.forEach(function (s) {
      s.points.forEach(function (p) {
        if (isNum(p[0]) && isNum(p[1])) {
          x0 = Math.min(x0, p[0]); x1 = Math.max(x1, p[0]);
          y0 = Math.min(y0, p[1]); y1 = Math.max(y1, p[1]);
        }
      });
    });
    if (x0 > x1) { x0 = 0; x1 = 1; y0 = 0; y1 = 1; }
    if (x1 === x0) { x1 = x0 + 1; }
    if (y1 === y0) { y1 = y0 + 1; }
    function sx(x) { return left + (x - x0) / (x1 - x0) * pw; }
    function sy(y) { return top + ph - (y - y0) / (y1 - y0) * ph; }
    var s = '<svg class="chart" width="' + w + '" height="' + h + '" viewBox="0 0 ' + w + ' ' + h + '" role="img">';
    s += '<text x="' + left + '" y="16" font-size="13">' + esc(title) + '</text>';
    s += '<rect class="axis" x="' + left + '" y="' + top + '" width="' + pw + '" height="' + ph + '"/>';
    for (var k = 0; k <= 4; k++) {
      var fy = y0 + (y1 - y0) * k / 4, fx = x0 + (x1 - x0) * k / 4;
      s += '<text x="' + (left - 4) + '" y="' + (sy(fy) + 4) + '" text-anchor="end">' + fmt(fy) + '</text>';
      s += '<text x="' + sx(fx) + '" y="' + (top + ph + 14) + '" text-anchor="middle">' + fmt(fx) + '</text>';
    }
    s += '<text x="' + (left + pw / 2) + '" y="' + (h - 6) + '" text-anchor="middle">' + esc(xLabel) + '</text>';
    series.forEach(function (ser, i) {
      var c = PALETTE[i % PALETTE.length];
      var pts = ser.points.filter(function (p) { return isNum(p[0]) && isNum(p[1]); })
        .map(function (p) { return sx(p[0]).toFixed(2) + ',' + sy(p[1]).toFixed(2); });
      if (pts.length === 1) {
        var xy = pts[0].split(',');
        s += '<circle cx="' + xy[0] + '" cy="' + xy[1] + '" r="3" fill="' + c + '"/>';
      } else if (pts.length > 1) {
        s += '<polyline class="series" fill="none" stroke="' + c + '" stroke-width="1.5" points="' + pts.join(' ') + '"/>';
      }
      var ly = top + 14 * i + 8;
      s += '<line x1="' + (left + pw + 10) + '" y1="' + ly + '" x2="' + (left + pw + 28) + '" y2="' + ly +
        '" stroke="' + c + '" stroke-width="2"/><text x="' + (left + pw + 32) + '" y="' + (ly + 4) + '">' + esc(ser.name) + '</text>';
    });
    return s + '</svg>';
  }

  // The layer × head heat map of module kind `m` at its logged step number `i`.
  function heatmap(m, i) {
    var heads = Math.max(1, m.heads), rows = Math.max(1, m.layers.length);
    var cell = 28, left = 70, top = 30;
    // Wide enough for the caption above a narrow grid.
    var w = Math.max(left + cell * heads + 20, 280), h = top + cell * rows + 34;
    var max = 1;
    m.ranks.forEach(function (grid) { grid.forEach(function (v) { if (isNum(v)) { max = Math.max(max, v); } }); });
    var grid = m.ranks[i] || [];
    var s = '<svg class="heatmap" width="' + w + '" height="' + h + '" viewBox="0 0 ' + w + ' ' + h + '" role="img">';
    s += '<text x="' + left + '" y="18" font-size="13">step ' + esc(m.steps[i]) + ' (darkest: rank ' + max + ')</text>';
    m.layers.forEach(function (layer, r) {
      var y = top + cell * r;
      s += '<text x="' + (left - 6) + '" y="' + (y + cell * 0.65) + '" text-anchor="end">layer ' + esc(layer) + '</text>';
      for (var j = 0; j < heads; j++) {
        var v = grid[r * heads + j], x = left + cell * j, t = isNum(v) ? v / max : 0;
        var alpha = (m.alpha[i] || [])[r * heads + j];
        s += '<rect class="cell" x="' + x + '" y="' + y + '" width="' + cell + '" height="' + cell +
          '" fill="' + (isNum(v) ? color(t) : 'none') + '" stroke="#999999"><title>layer ' + esc(layer) + ' head ' + j +
          ': rank ' + (isNum(v) ? v : '–') + (isNum(alpha) ? ', α ' + fmt(alpha) : '') + '</title></rect>';
        if (isNum(v)) {
          s += '<text class="cell-label" x="' + (x + cell / 2) + '" y="' + (y + cell * 0.65) + '" text-anchor="middle" style="fill:' +
            (t > 0.5 ? '#ffffff' : '#000000') + '">' + v + '</text>';
        }
      }
    });
    for (var j = 0; j < heads; j++) {
      s += '<text x="' + (left + cell * j + cell / 2) + '" y="' + (top + cell * rows + 14) + '" text-anchor="middle">h' + j + '</text>';
    }
    return s + '</svg>';
  }

  function table(rows) {
    return '<table>' + rows.map(function (r) {
      return '<tr><th>' + esc(r[0]) + '</th><td>' + esc(r[1]) + '</td></tr>';
    }).join('') + '</table>';
  }

  function jsonBlock(name, value) {
    return '<details><summary>' + esc(name) + '</summary><pre>' + esc(JSON.stringify(value, null, 2)) + '</pre></details>';
  }

  // Curves of `field` per split, or of every eval metric but loss.
  function curves(records, pick) {
    var by = {};
    records.forEach(function (r) {
      pick(r).forEach(function (p) {
        (by[p[0]] = by[p[0]] || []).push([r.step, p[1]]);
      });
    });
    return Object.keys(by).sort().map(function (k) { return { name: k, points: by[k] }; });
  }

  var metrics = data.metrics || [];
  var ranks = data.ranks || [];
  var html = '<h1>' + esc(data.title) + '</h1>';
  if (data.summary && data.summary.length) { html += table(data.summary); }

  html += '<h2>Learned ranks (layer × head)</h2>';
  if (ranks.length === 0) {
    html += '<p class="note">No rank log: only ARD-LoRA adapters log their ranks.</p>';
  }
  ranks.forEach(function (m, k) {
    var last = m.steps.length - 1;
    html += '<section class="module"><h3>' + esc(m.module) + '</h3>';
    if (m.steps.length > 1) {
      html += '<label class="step">step <input type="range" min="0" max="' + last + '" value="' + last +
        '" data-module="' + k + '"></label>';
    }
    html += '<div class="heat" id="heat-' + k + '">' + heatmap(m, last) + '</div></section>';
  });

  html += '<h2>Curves</h2><div class="charts">';
  var loss = curves(metrics, function (r) {
    return isNum(r.loss) ? [[r.split || 'train', r.loss]] : [];
  });
  html += lineChart('loss', 'step', loss);
  var evals = curves(metrics, function (r) {
    if (r.split === 'train') { return []; }
    return Object.keys(r).filter(function (k) {
      return k !== 'step' && k !== 'loss' && isNum(r[k]);
    }).map(function (k) { return [k, r[k]]; });
  });
  if (evals.length) { html += lineChart('evaluation metrics', 'step', evals); }
  var lr = curves(metrics, function (r) { return r.split === 'train' && isNum(r.lr) ? [['lr', r.lr]] : []; });
  if (lr.length) { html += lineChart('learning rate', 'step', lr); }
  // α: the mean over each layer's heads, per module kind and layer.
  var alpha = [];
  ranks.forEach(function (m) {
    m.layers.forEach(function (layer, r) {
      var points = [];
      m.alpha.forEach(function (grid, i) {
        var sum = 0, n = 0;
        for (var j = 0; j < m.heads; j++) {
          var a = grid[r * m.heads + j];
          if (isNum(a)) { sum += a; n += 1; }
        }
        if (n) { points.push([m.steps[i], sum / n]); }
      });
      alpha.push({ name: m.module.split('.').slice(-1)[0] + ' L' + layer, points: points });
    });
  });
  if (alpha.length) { html += lineChart('α (mean over heads)', 'step', alpha); }
  html += '</div>';

  html += '<h2>Plan</h2>';
  var plan = data.plan;
  if (plan) {
    var t = plan.training || {}, m = plan.model || {};
    html += table([
      ['pipeline', plan.pipeline],
      ['model', (m.architecture || '') + ', ' + (m.parameters || 0) + ' parameters, ' + (m.layers || 0) + ' layers'],
      ['adapters', (plan.adapters || []).map(function (a) {
        return a.name + ' (' + a.method + ', ' + (a.modules || []).length + ' modules)';
      }).join('; ')],
      ['trainable', (plan.trainable_initial || 0) + ' parameters (' + fmt(plan.trainable_percent) + '%)'],
      ['steps', (t.total_steps || 0) + ' (batch ' + (t.batch_size || 0) + ' × ' + (t.grad_accum || 1) + ')'],
    ]);
    html += jsonBlock('plan.json', plan);
  } else {
    html += '<p class="note">No plan.json in the run directory.</p>';
  }
  html += '<h2>Manifest</h2>';
  var man = data.manifest;
  if (man) {
    html += table([
      ['status when this page was written', man.status],
      ['started', man.started_at],
      ['ended', man.ended_at || '–'],
      ['device', man.device],
      ['resumed', String((man.resumptions || []).length) + ' times'],
    ]);
    html += jsonBlock('manifest.json', man);
  } else {
    html += '<p class="note">No manifest.json in the run directory.</p>';
  }

  root.innerHTML = html;
  Array.prototype.forEach.call(root.querySelectorAll('input[data-module]'), function (input) {
    input.addEventListener('input', function () {
      var k = Number(input.dataset.module);
      document.getElementById('heat-' + k).innerHTML = heatmap(ranks[k], Number(input.value));
    });
  });
  document.body.dataset.rendered = 'ok';
})();
