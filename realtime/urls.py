from django.urls import path

from realtime import views

urlpatterns = [
    path("publish/", views.PublishView.as_view()),
]
