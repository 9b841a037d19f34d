// Keyboard shortcuts for task pages: progressive enhancement, the pages work without it.
//   the key shown beside an option  chooses it (and moves on); in a multi question it toggles
//   ArrowDown / ArrowUp             next / previous question
//   Enter                           submit (follows the page's main link elsewhere)
//   Ctrl+Enter                      submit from inside a text box; Escape leaves the text box
// Questions asked only for some answers (show_if) are hidden and disabled until they apply.
(function () {
  "use strict";
  var form = document.querySelector("form.task-form");
  var enterLink = document.querySelector("a[data-enter]");

  function isTyping(el) {
    return el && (el.tagName === "TEXTAREA" || (el.tagName === "INPUT" && /^(text|url|search|email|number)$/.test(el.type)));
  }

  if (!form || form.querySelector("fieldset[disabled]")) {
    if (!enterLink) return;
    document.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.ctrlKey && !e.metaKey && !e.altKey && !isTyping(e.target) &&
          !(e.target && (e.target.tagName === "A" || e.target.tagName === "BUTTON"))) {
        e.preventDefault();
        enterLink.click();
      }
    });
    return;
  }

  var questions = Array.prototype.slice.call(form.querySelectorAll(".question"));
  var active = -1;

  function checkedValue(name) {
    var inputs = form.querySelectorAll("input[name='" + CSS.escape(name) + "']");
    for (var i = 0; i < inputs.length; i++) if (inputs[i].checked) return inputs[i].value;
    return null;
  }

  function applyShowIf() {
    questions.forEach(function (q) {
      var key = q.getAttribute("data-show-if-key");
      if (!key) return;
      var show = checkedValue(key) === q.getAttribute("data-show-if-equals");
      q.hidden = !show;
      q.querySelectorAll("input, textarea").forEach(function (el) { el.disabled = !show; });
    });
  }

  function visible(i) { return i >= 0 && i < questions.length && !questions[i].hidden; }

  function activate(i) {
    if (!visible(i)) return;
    if (active >= 0) questions[active].classList.remove("active");
    active = i;
    var q = questions[i];
    q.classList.add("active");
    var text = q.querySelector("textarea");
    (text || q).focus();
    if (!text && q.scrollIntoView) q.scrollIntoView({ block: "nearest" });
  }

  function move(step) {
    for (var i = active + step; i >= 0 && i < questions.length; i += step) {
      if (visible(i)) { activate(i); return; }
    }
  }

  function current(target) {
    var q = target && target.closest ? target.closest(".question") : null;
    var i = q ? questions.indexOf(q) : -1;
    return i >= 0 ? i : active;
  }

  form.addEventListener("change", applyShowIf);
  form.addEventListener("focusin", function (e) {
    var i = current(e.target);
    if (i >= 0 && i !== active) {
      if (active >= 0) questions[active].classList.remove("active");
      active = i;
      questions[i].classList.add("active");
    }
  });
  applyShowIf();
  var invalid = form.querySelector(".question.invalid");
  activate(invalid ? questions.indexOf(invalid) : 0);

  document.addEventListener("keydown", function (e) {
    var target = e.target;
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); return; }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (isTyping(target)) {
      if (e.key === "Escape") { e.preventDefault(); questions[current(target)].focus(); }
      return;
    }
    if (target && (target.tagName === "A" || target.tagName === "BUTTON")) return;
    if (e.key === "Enter") { e.preventDefault(); form.requestSubmit(); return; }
    var onInput = target && target.tagName === "INPUT";
    if ((e.key === "ArrowDown" || e.key === "ArrowUp") && !onInput) {
      e.preventDefault();
      move(e.key === "ArrowDown" ? 1 : -1);
      return;
    }
    var i = current(target);
    if (i < 0 || e.key.length !== 1) return;
    var wanted = e.key.toLowerCase();
    var inputs = questions[i].querySelectorAll("input[data-key]");
    for (var k = 0; k < inputs.length; k++) {
      var input = inputs[k];
      if (input.getAttribute("data-key").toLowerCase() !== wanted) continue;
      e.preventDefault();
      if (input.type === "checkbox") {
        input.checked = !input.checked;
        applyShowIf();
      } else {
        input.checked = true;
        applyShowIf();
        move(1);
      }
      return;
    }
  });
})();
